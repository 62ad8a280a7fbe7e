"""The speed benchmark: its records on a tiny pack, the reference PIL transforms against their
definitions (torchvision's semantics), and the hybrid step against the loss written out by hand."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from data.fixtures import class_images, shuffled_labels
from longtail.data.augment import AugmentSpec, color_jitter
from longtail.data.pack import encode_png, write_pack
from longtail.errors import LongtailError
from shared_data import REPO

BENCH = REPO / "benchmarks"
COUNTS = [40, 30, 25, 20, 18, 15, 14, 13, 12, 13]  # 200 images, long-tailed
KEYS = (
    "workload",
    "pipeline",
    "ms_per_step",
    "images_per_s",
    "epoch200_s",
    "peak_mem_mb",
    "speedup_vs_reference",
    "device",
    "torch",
    "commit",
    "date",
)


def _load(name: str) -> ModuleType:
    """A benchmark module by name; benchmarks/ on sys.path, as when a script runs from there."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


ref = _load("reference_pipeline")
workloads = _load("workloads")


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels = shuffled_labels(COUNTS, 10, seed=0)
    images = class_images(labels, 32, 3, 10, seed=0)
    path = tmp_path_factory.mktemp("pack") / "tiny.npz"
    meta = {
        "classes": [f"c{i}" for i in range(10)],
        "channels": 3,
        "mean": [0.49, 0.48, 0.45],
        "std": [0.25, 0.24, 0.26],
    }
    splits = {
        "train": ([encode_png(im) for im in images], labels),
        "test": ([encode_png(images[0])], labels[:1]),
    }
    write_pack(path, splits, meta)
    return path


def _run_speed(pack: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    args = [f"--data={pack}", f"--out={out}", "--device=cpu", *extra]
    assert _load("speed").main(args) == 0
    records: list[dict[str, Any]] = json.loads(out.read_text())
    return records


def test_speed_writes_both_pipelines_of_both_workloads(tiny_pack: Path, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    records = _run_speed(
        tiny_pack, out, "--steps=2", "--warmup=1", "--workers=0", "--batch-size=16"
    )
    pairs = [(r["workload"], r["pipeline"]) for r in records]
    assert pairs == [
        ("ce", "reference"),
        ("ce", "ours"),
        ("hybrid", "reference"),
        ("hybrid", "ours"),
    ]
    by = {(r["workload"], r["pipeline"]): r for r in records}
    for r in records:
        for key in KEYS:
            assert key in r, key
        assert math.isfinite(r["loss_mean"]) and r["loss_mean"] > 0
        assert r["peak_mem_mb"] is None and r["device"].startswith("cpu")
        ms = float(r["ms_per_step"])
        assert r["batch_size"] == 16 and r["steps_per_epoch"] == 200 // 16
        assert r["epoch200_s"] == pytest.approx(12 * 200 * ms / 1e3, abs=0.051)
        views = 3 if r["workload"] == "hybrid" else 1
        assert r["images_per_s"] == pytest.approx(16 * views / ms * 1e3, rel=1e-3, abs=0.051)
        reference_ms = float(by[(r["workload"], "reference")]["ms_per_step"])
        assert r["speedup_vs_reference"] == pytest.approx(reference_ms / ms, rel=1e-3, abs=6e-4)
    # At initialisation CE is about log(10); the hybrid loss mixes it with SupCon.
    for pipeline in ("reference", "ours"):
        assert abs(by[("ce", pipeline)]["loss_mean"] - math.log(10)) < 1.5


def test_speed_reference_with_worker_processes(tiny_pack: Path, tmp_path: Path) -> None:
    records = _run_speed(
        tiny_pack,
        tmp_path / "w.json",
        "--steps=1",
        "--warmup=0",
        "--workers=2",
        "--batch-size=16",
        "--workloads=hybrid",
    )
    reference = next(r for r in records if r["pipeline"] == "reference")
    assert reference["workers"] == "1+1"
    assert all(math.isfinite(r["loss_mean"]) for r in records)


def test_speed_missing_pack_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="gpu_prep.sh"):
        _load("speed").main([f"--data={tmp_path / 'none.npz'}", "--device=cpu"])


def test_split_workers() -> None:
    hybrid, ce = workloads.WORKLOADS["hybrid"], workloads.WORKLOADS["ce"]
    assert workloads.split_workers(hybrid, 15) == (10, 5)
    assert workloads.split_workers(hybrid, 2) == (1, 1)
    assert workloads.split_workers(hybrid, 1) == (1, 0)
    assert workloads.split_workers(hybrid, 0) == (0, 0)
    assert workloads.split_workers(ce, 7) == (0, 7)
    assert hybrid.images_per_step == 768 and ce.images_per_step == 128


# --- the reference PIL transforms against their definitions ---------------------------------


def _image(seed: int = 0, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int64)


def _luma(a: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma in exact arithmetic: (299 R + 587 G + 114 B) / 1000."""
    a = a.astype(np.int64)
    return (299 * a[..., 0] + 587 * a[..., 1] + 114 * a[..., 2]) / 1000


@pytest.mark.parametrize(("top", "left"), [(0, 0), (8, 8), (3, 5), (8, 0)])
def test_pad_crop_at_forced_offset_is_a_window_of_the_zero_padded_image(
    top: int, left: int
) -> None:
    a = _image()
    padded = np.zeros((40, 40, 3), np.uint8)
    padded[4:36, 4:36] = a
    out = np.asarray(ref.pad_crop(Image.fromarray(a), top, left, 4))
    assert np.array_equal(out, padded[top : top + 32, left : left + 32])


def test_flip_and_grayscale() -> None:
    a = _image(1)
    assert np.array_equal(np.asarray(ref.hflip(Image.fromarray(a))), a[:, ::-1])
    gray = _arr(ref.to_grayscale3(Image.fromarray(a)))
    assert gray.shape == (32, 32, 3)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert np.abs(gray[..., 0] - _luma(a)).max() <= 1  # PIL's fixed-point rounding


def test_jitter_closed_forms() -> None:
    a = _image(2)
    img = Image.fromarray(a)
    for op in (ref.adjust_brightness, ref.adjust_contrast, ref.adjust_saturation):
        assert np.array_equal(np.asarray(op(img, 1.0)), a)  # factor 1 is the identity
    assert (_arr(ref.adjust_brightness(img, 0.0)) == 0).all()
    bright = _arr(ref.adjust_brightness(img, 1.5))
    assert np.abs(bright - np.clip(1.5 * a, 0, 255)).max() <= 1
    grey = int(_luma(a).mean() + 0.5)  # contrast 0: the mean luma everywhere
    assert np.abs(_arr(ref.adjust_contrast(img, 0.0)) - grey).max() <= 1
    desaturated = _arr(ref.adjust_saturation(img, 0.0))
    assert np.abs(desaturated - _luma(a)[..., None]).max() <= 1


def test_hue_shift_of_a_third_turn_rotates_the_primaries() -> None:
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    out = np.asarray(ref.adjust_hue(Image.fromarray(primaries), 1 / 3))
    assert np.array_equal(out, np.roll(primaries, 1, axis=2))  # red -> green -> blue -> red
    twice = np.asarray(ref.adjust_hue(Image.fromarray(out), 1 / 3))
    assert np.array_equal(twice, np.roll(primaries, 2, axis=2))


def test_pil_jitter_agrees_with_our_batched_jitter() -> None:
    """Two independent implementations of torchvision's ColorJitter ops, within rounding."""
    a = _image(3)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    pil_ops = (ref.adjust_brightness, ref.adjust_contrast, ref.adjust_saturation)
    for k, op in enumerate(pil_ops):
        for factor in (0.6, 1.4):
            factors = torch.ones(1, 4)
            factors[0, 3] = 0.0
            factors[0, k] = factor
            ops = tuple(i == k for i in range(4))
            ours = color_jitter(x, factors, (k,), ops)[0].permute(1, 2, 0).numpy() * 255
            pil = _arr(op(Image.fromarray(a), factor))
            assert np.abs(pil - ours).max() <= 2.01, (op.__name__, factor)


def test_to_normalized_tensor_is_to_tensor_then_normalize() -> None:
    a = _image(4)
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    out = ref.to_normalized_tensor(Image.fromarray(a), mean.view(3, 1, 1), std.view(3, 1, 1))
    expected = (a.astype(np.float64) / 255 - mean.numpy()) / std.numpy()
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert np.allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_random_crop_flip_output_is_one_of_the_162_candidates() -> None:
    a = _image(5)
    img = Image.fromarray(a)
    pipeline = ref.pil_pipeline(AugmentSpec(crop="pad", padding=4, flip=True), [0.0] * 3, [1.0] * 3)
    candidates = {}
    for top in range(9):
        for left in range(9):
            crop = ref.pad_crop(img, top, left, 4)
            candidates[np.asarray(crop).tobytes()] = (top, left, False)
            candidates[np.asarray(ref.hflip(crop)).tobytes()] = (top, left, True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(300):
        out = (pipeline(img) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
        seen.add(candidates[out.numpy().tobytes()])
    tops = {t for t, _, _ in seen}
    assert {0, 8} <= tops and {f for _, _, f in seen} == {False, True}


def test_random_apply_probabilities_at_the_extremes() -> None:
    img = Image.fromarray(_image(6))
    never = ref.RandomColorJitter((0.4, 0.4, 0.4, 0.1), p=0.0)
    assert np.array_equal(np.asarray(never(img)), np.asarray(img))
    always = ref.RandomGrayscale(p=1.0)
    assert np.array_equal(np.asarray(always(img)), np.asarray(ref.to_grayscale3(img)))
    with pytest.raises(LongtailError, match="crop=pad"):
        ref.pil_pipeline(AugmentSpec(crop="resized"), [0.0] * 3, [1.0] * 3)


def test_class_balanced_reference_sampler_gives_every_class_equal_mass() -> None:
    labels = shuffled_labels(COUNTS, 10, seed=1)
    dataset = ref.PilViewsDataset(ref.pil_images(class_images(labels, 8, 3, 10, 1)), labels, [])
    loader = ref.reference_loader(dataset, 8, "class_balanced", 0, False, seed=0)
    weights = torch.as_tensor(loader.sampler.weights)
    mass = torch.zeros(10, dtype=torch.float64).index_add_(0, torch.as_tensor(labels), weights)
    assert torch.allclose(mass, torch.ones(10, dtype=torch.float64))


# --- the hybrid step --------------------------------------------------------------------------

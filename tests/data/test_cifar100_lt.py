"""CIFAR-100-LT on the real lossless copy: subset counts, the GPU data pack, the PSC-CB sampler.

References are independent of the code under test: the published totals (10,847 / 12,608 / 19,573
training images at r = 100 / 50 / 10, n_max 500), the exponential profile written out as a loop,
and the source pickles read directly with the LDAM-DRW subset rule.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from longtail.cli import main
from longtail.config import load_config
from longtail.data.lt_index import long_tail_counts, long_tail_indices
from longtail.data.pack import read_pack, read_pack_meta
from longtail.data.readers.cifar import read_cifar
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.train.build import build_training
from shared_data import REPO, require_shared

RECIPES = REPO / "recipes" / "cifar100_lt"
PUBLISHED_TOTALS = {100: 10_847, 50: 12_608, 10: 19_573}
NO_CACHE = "data.cache_dir=null"  # keep the tests from writing a decoded cache into the checkout


@pytest.fixture
def cifar100(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real pickles; recipes name them relative to the repository root."""
    root = require_shared("cifar-100-python")
    monkeypatch.chdir(REPO)
    return root


def _exp_profile(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """n_c = floor(n_max * r^(-c / (C - 1))), Cao et al. 2019 (LDAM-DRW), written as a loop."""
    return [
        math.floor(n_max * ratio ** (-c / (num_classes - 1)) + 1e-9) for c in range(num_classes)
    ]


@pytest.mark.shared_data
@pytest.mark.parametrize("ratio", [100, 50, 10])
def test_longtail_data_prints_the_published_counts(
    cifar100: Path, ratio: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", str(RECIPES / f"ce_r{ratio}.yaml"), NO_CACHE]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dataset"] == "cifar100"
    assert printed["total"] == PUBLISHED_TOTALS[ratio]
    assert printed["counts"] == _exp_profile(500, 100, ratio)
    assert sum(printed["counts"]) == printed["total"]


@pytest.mark.shared_data
def test_many_medium_few_at_r100(cifar100: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["data", str(RECIPES / "ce_r100.yaml"), NO_CACHE])
    counts = json.loads(capsys.readouterr().out)["counts"]
    many = sum(n > 100 for n in counts)
    few = sum(n < 20 for n in counts)
    assert (many, 100 - many - few, few) == (35, 35, 30)
    assert (counts[0], counts[-1]) == (500, 5)


@pytest.mark.shared_data
def test_pack_is_small_and_bit_exact(
    cifar100: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cifar100_lt_r100.npz"
    assert main(["pack", str(RECIPES / "ce_r100.yaml"), str(out), NO_CACHE]) == 0
    summary = json.loads(capsys.readouterr().out)
    size = out.stat().st_size
    assert size == summary["bytes"] and size < 60 * 2**20  # GPU working tree is capped at 64 MiB
    raw = (PUBLISHED_TOTALS[100] + 10_000) * 32 * 32 * 3
    assert size < raw  # the whole point: encoded (lossless PNG) is smaller than uint8 arrays

    # The reference subset, built from the pickles directly with the LDAM-DRW rule (seed 0).
    full, test = read_cifar(cifar100, "train"), read_cifar(cifar100, "test")
    indices = long_tail_indices(full.labels, long_tail_counts(500, 100, 100), seed=0)
    assert np.array_equal(np.asarray(read_pack_meta(out)["lt_index"]["indices"]), indices)
    train = read_pack(out, "train")
    assert train.images.dtype == np.uint8 and len(train.labels) == PUBLISHED_TOTALS[100]
    assert np.array_equal(train.images, full.images[indices])
    assert np.array_equal(train.labels, full.labels[indices])
    packed_test = read_pack(out, "test")
    assert np.array_equal(packed_test.images, test.images)
    assert np.array_equal(packed_test.labels, test.labels)
    assert train.classes == full.classes


def _contrastive_labels(recipe: str, epochs: int) -> tuple[torch.Tensor, list[int]]:
    """Labels the contrastive stream draws over ``epochs`` epochs, and the training counts."""
    cfg = load_config(RECIPES / recipe, [NO_CACHE, "train.progress=false"])
    device = torch.device("cpu")
    data = prepare_data(cfg.data, device)
    parts = build_training(cfg, data, device)
    assert hasattr(parts.loader, "contrastive")
    sampler = parts.loader.contrastive.sampler
    drawn = torch.cat([idx for _ in range(epochs) for idx in sampler])
    return data.train_labels[drawn], data.train_counts


@pytest.mark.shared_data
def test_psc_cb_contrastive_stream_is_class_balanced(cifar100: Path) -> None:
    labels, counts = _contrastive_labels("hybrid_psc_cb_r100.yaml", epochs=5)
    freq = torch.bincount(labels, minlength=100).double() / len(labels)
    # ~537 draws per class: a 30% band is > 6 standard deviations of a uniform multinomial
    assert ((freq - 0.01).abs() < 0.003).all()
    few = torch.tensor(counts) < 20
    assert freq[few].sum() == pytest.approx(0.30, abs=0.02)  # instance sampling gives ~0.03


@pytest.mark.shared_data
def test_plain_psc_contrastive_stream_stays_instance_sampled(cifar100: Path) -> None:
    labels, counts = _contrastive_labels("hybrid_psc_r100.yaml", epochs=1)
    seen = torch.bincount(labels, minlength=100)
    # one epoch = one permutation (the last partial batch dropped): each image at most once
    assert (seen <= torch.tensor(counts)).all()
    assert int(seen.sum()) == (sum(counts) // 512) * 512


def test_contrastive_sampler_is_validated() -> None:
    with pytest.raises(LongtailError, match="strategy.contrastive_sampler"):
        load_config(None, ["strategy.name=hybrid", "strategy.contrastive_sampler=balanced"])

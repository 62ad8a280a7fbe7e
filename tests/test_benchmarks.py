"""The benchmark scripts run end to end on tiny data and write their JSON records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from data.fixtures import write_idx
from shared_data import REPO


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_writes_records(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=2)
    out = tmp_path / "bench.json"
    args = [
        str(REPO / "recipes" / "demo.yaml"),
        f"data.root={tmp_path / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=5",
        "train.batch_size=16",
        "--steps=2",
        "--warmup=1",
        f"--out={out}",
    ]
    assert _load("throughput").main(args) == 0
    (record,) = json.loads(out.read_text())
    for key in ("ms_per_step", "images_per_s", "device", "torch", "commit", "date"):
        assert key in record
    assert record["images_per_s"] > 0 and record["batch_size"] == 16


def test_step_breakdown_times_each_part(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=2)
    out = tmp_path / "breakdown.json"
    args = [str(REPO / "recipes" / "demo.yaml"), f"data.root={tmp_path / 'idx'}",
            "data.cache_dir=null", "data.imbalance_ratio=5", "train.batch_size=16", "--steps=1",
            "--warmup=1", "--precisions=fp32", f"--out={out}"]  # fmt: skip
    assert _load("step_breakdown").main(args) == 0
    (record,) = json.loads(out.read_text())
    assert record["precision"] == "fp32" and record["autocast"] == "None"
    assert set(record["ms"]) == {"bare", "step", "data", "loop"}
    assert all(v > 0 for v in record["ms"].values()) and record["cpu_native_bf16"] is False


def test_contrastive_memory_cell_measures_saved_tensors() -> None:
    bench = _load("contrastive_memory")
    supcon = bench.one_cell("SupCon", 32, 10, "cpu", repeats=1)
    psc = bench.one_cell("PSC", 32, 10, "cpu", repeats=1)
    assert supcon["anchors"] == 64 and psc["anchors"] == 32
    # SupCon keeps [2N, 2N] similarities for backward; PSC only [N, C]: far less
    assert supcon["saved_for_backward_mb"] > psc["saved_for_backward_mb"] > 0


def test_demo_precision_trains_once_per_precision(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=2)
    out = tmp_path / "demo.json"
    args = [str(REPO / "recipes" / "demo.yaml"), f"data.root={tmp_path / 'idx'}",
            "data.cache_dir=null", "data.imbalance_ratio=5", "train.batch_size=16",
            "train.epochs=1", "probe.enabled=false", "train.progress=false",
            "--precisions=fp32", f"--out={out}"]  # fmt: skip
    assert _load("demo_precision").main(args) == 0
    (record,) = json.loads(out.read_text())
    assert record["precision"] == "fp32" and record["epochs"] == 1
    assert 0 <= record["top1"] <= 100 and record["images_per_s"] > 0
    for key in ("train_s", "wall_s", "device", "commit", "date", "cpu_native_bf16"):
        assert key in record


def test_ddp_overhead_times_both_setups(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=2)
    out = tmp_path / "ddp.json"
    args = [str(REPO / "recipes" / "demo.yaml"), f"data.root={tmp_path / 'idx'}",
            "data.cache_dir=null", "data.imbalance_ratio=5", "train.batch_size=16",
            "model.kwargs.width=0.25", "train.device=cpu", "--ranks=2", "--threads=2",
            "--steps=2", "--warmup=1", f"--out={out}"]  # fmt: skip
    assert _load("ddp_overhead").main(args) == 0
    plain, ddp = json.loads(out.read_text())
    assert (plain["setup"], plain["ranks"], plain["threads_per_rank"]) == ("plain", 1, 2)
    assert (ddp["setup"], ddp["ranks"], ddp["threads_per_rank"]) == ("ddp", 2, 1)
    assert plain["ms_per_step"] > 0 and ddp["ms_per_step"] > 0
    assert plain["final_loss_mean"] == pytest.approx(ddp["final_loss_mean"], rel=0.05)


def test_stream_loader_writes_records(tmp_path: Path) -> None:
    out = tmp_path / "stream.json"
    args = ["--images=8", "--workers=0,1", "--batch=4", "--size=32", "--side=64x48", f"--out={out}"]
    assert _load("stream_loader").main(args) == 0
    (record,) = json.loads(out.read_text())
    assert {r["workers"] for r in record["throughput"]} == {0, 1}
    assert all(r["images_per_s"] > 0 for r in record["throughput"])
    assert [r["listed"] for r in record["host_memory_flat"]] == [8, 800]
    inat = next(r for r in record["memory_estimates"] if r["set"] == "iNaturalist 2018")
    assert inat["device_path_gib"] == round((437_513 + 24_426) * 3 * 32 * 32 / 1024**3, 1)
    for key in ("device", "commit", "date"):
        assert key in record


def test_stream_loader_times_a_model_step_on_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "step.json"
    args = ["--images=40", "--workers=1", "--batch=4", "--size=32", "--side=64x48",
            "--model=resnet20", "--steps=1", "--epoch", f"--out={out}"]  # fmt: skip
    assert _load("stream_loader").main(args) == 0
    step = json.loads(out.read_text())[0]["model_step"]
    assert step["streamed_images_per_s"] > 0 and step["device_resident_images_per_s"] > 0
    assert step["epoch_images"] == 40

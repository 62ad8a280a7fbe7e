"""End-to-end training on tiny data in the real Fashion-MNIST idx format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import train

TINY = [
    "data.dataset=fashion_mnist",
    "data.imbalance_ratio=10",
    "data.cache_dir=",
    "model.name=resnet20",
    "model.kwargs.width=0.5",
    "train.batch_size=32",
    "train.progress=false",
    "train.device=cpu",
    "schedule.warmup_epochs=1",
    "schedule.milestones=[2]",
    "schedule.gamma=0.1",
]


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmnist")
    write_idx(root, n_train_per_class=40, n_test_per_class=10)
    return root


def _cfg(idx_root: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*TINY, f"data.root={idx_root}", f"out_dir={out}", *extra])


def test_run_folder_is_complete_and_self_describing(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=2", "name=smoke"))
    assert run.parent == tmp_path and run.name.endswith("-smoke")
    names = {p.name for p in run.iterdir()}
    expected = {"config.yaml", "lt_index.json", "metrics.jsonl", "checkpoint.pt", "final.json"}
    assert expected | {"status.json", "per_class.png"} <= names
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    final = json.loads((run / "final.json").read_text())
    index = json.loads((run / "lt_index.json").read_text())
    # LT counts: floor(40 * 10^(-c/9)) per class, and the saved index reproduces them
    assert final["train_counts"] == [int(40 * 0.1 ** (c / 9)) for c in range(10)]
    assert index["counts"] == final["train_counts"] and len(index["indices"]) == index["total"]
    assert len(final["per_class"]) == 10 and final["num_classes"] == 10
    for key in ("top1", "many", "medium", "few", "head", "middle", "tail", "wall_s", "commit"):
        assert key in final
    assert final["many"] is None  # no class has > 100 images here: an empty group is null
    assert json.loads((run / "status.json").read_text())["state"] == "complete"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["optim"]["lr"] == 0.1  # defaults written out


def test_learns_the_tiny_task(idx_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        idx_root, tmp_path, "train.epochs=4", "data.imbalance_ratio=1", "schedule.kind=cosine"
    )
    final = json.loads((train(cfg) / "final.json").read_text())
    assert final["top1"] > 40.0, final["top1"]  # 10 classes: chance is 10%


def test_resume_continues_exactly(idx_root: Path, tmp_path: Path) -> None:
    straight = train(_cfg(idx_root, tmp_path / "a", "train.epochs=3"))
    half = train(_cfg(idx_root, tmp_path / "b", "train.epochs=1"))
    resumed = train(_cfg(idx_root, tmp_path / "c", "train.epochs=3", f"resume={half}"))
    assert resumed == half
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = [
        [
            json.loads(line)["train_loss"]
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (straight, resumed)
    ]
    assert losses[0] == losses[1]


def test_eval_reproduces_final_top1(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=1"))
    final = json.loads((run / "final.json").read_text())
    again = evaluate_run(run)
    assert again["top1"] == final["top1"] and again["per_class"] == final["per_class"]
    assert (run / "eval.json").is_file()


def test_missing_data_leaves_no_run_folder(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"data.root={tmp_path / 'nope'}", f"out_dir={tmp_path / 'o'}"])
    with pytest.raises(LongtailError, match="does not exist"):
        train(cfg)
    assert not (tmp_path / "o").exists()


def test_zero_sample_class_is_refused(idx_root: Path, tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="zero training images|0 images|ratio"):
        train(_cfg(idx_root, tmp_path, "data.imbalance_ratio=100"))


def test_nan_loss_stops_with_one_line_and_keeps_no_final(idx_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(idx_root, tmp_path, "train.epochs=2", "optim.lr=1e30", "schedule.warmup_epochs=0")
    with pytest.raises(LongtailError, match="loss became") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    (run,) = tmp_path.iterdir()
    assert not (run / "final.json").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"

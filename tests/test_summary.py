"""The end-of-run summary and the probe sized to a shortened run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.eval.probe_budget import MIN_PER_CLASS, long_tailed_subset, per_class_cap
from longtail.summary import run_summary
from longtail.train.trainer import train
from shared_data import REPO

# one xdist worker runs this module (its fixtures train once): see tests/test_dist.py
pytestmark = pytest.mark.xdist_group("summary")


def _overrides(root: Path) -> list[str]:
    return [
        "data.dataset=fashion_mnist",
        f"data.root={root / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=5",
        "model.name=resnet20",
        "model.kwargs.width=0.25",
        "train.batch_size=16",
        "train.epochs=1",
        "train.device=cpu",
        f"out_dir={root / 'runs'}",
        "method=CE",
        "paper.top1=70.0",
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A run at full length (no recipe to be shorter than), a shortened one (2 steps), and the
    demo recipe shortened to one epoch."""
    root = tmp_path_factory.mktemp("summary")
    write_idx(root / "idx", n_train_per_class=40, n_test_per_class=4)
    return {
        "full": train(load_config(None, _overrides(root))),
        "short": train(load_config(None, [*_overrides(root), "train.max_steps_per_epoch=2"])),
        "demo": train(load_config(REPO / "recipes/demo.yaml", _overrides(root))),
    }


@pytest.fixture(scope="module")
def finals(runs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {k: json.loads((v / "final.json").read_text()) for k, v in runs.items()}


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d\d\b", text)]


def test_the_summary_numbers_are_final_jsons(finals: dict[str, dict[str, Any]]) -> None:
    final = finals["full"]
    text = run_summary(final)
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert _numbers(lines["top-1"]) == [round(final["top1"], 2), 70.0]
    groups = [round(final[g], 2) for g in ("head", "middle", "tail")]
    assert _numbers(lines["groups"]) == groups
    balanced = final["probe"]["balanced"]
    assert _numbers(lines["probe"]) == [
        round(balanced["probe_top1"], 2),
        round(balanced["probe_knn_top1"], 2),
    ]
    shown = [balanced[k] for k in ("few_many_ratio", "slope", "cv")]
    assert _numbers(lines["balance"]) == [round(v, 2) for v in shown if v is not None]
    assert text.splitlines()[0] == f"{final['name']} (CE)"
    assert "shortened" not in text


def test_a_shortened_run_says_so_and_probes_sets_sized_to_it(
    finals: dict[str, dict[str, Any]],
) -> None:
    short, full = finals["short"], finals["full"]
    assert short["shortened"] == ["train.max_steps_per_epoch=2"] and full["shortened"] == []
    assert short["probe_sized_to_run"] and not full["probe_sized_to_run"]
    # 2 steps of 16 images: budget 0.3 * 32 -> the floor of MIN_PER_CLASS a class
    assert short["probe"]["balanced"]["train_size"] == 10 * MIN_PER_CLASS
    assert full["probe"]["balanced"]["train_size"] == 10 * 40  # the whole balanced split
    assert short["probe"]["long_tailed"]["train_size"] < full["probe"]["long_tailed"]["train_size"]
    assert "(shortened: train.max_steps_per_epoch=2)" in run_summary(short)


def test_caps_follow_the_budget_and_never_raise_a_configured_cap() -> None:
    assert per_class_cap(None, 10, None) is None and per_class_cap(None, 10, 7) == 7
    assert per_class_cap(1000, 10, None) == 100 and per_class_cap(1000, 10, 50) == 50
    assert per_class_cap(5, 10, None) == MIN_PER_CLASS


def test_the_long_tailed_subset_keeps_every_class_in_proportion() -> None:
    labels = np.repeat(np.arange(4), [400, 100, 17, 3])
    keep = long_tailed_subset(labels, 4, 52)  # a tenth
    assert np.bincount(labels[keep], minlength=4).tolist() == [40, 10, 1, 1]
    assert (np.diff(keep) > 0).all()
    assert len(long_tailed_subset(labels, 4, None)) == len(labels)


def test_result_floats_are_written_without_binary_noise(
    finals: dict[str, dict[str, Any]],
) -> None:
    from longtail.io import rounded

    assert rounded({"a": [87.80999999999997, 1 / 3], "b": (2, "x")}) == {
        "a": [87.81, 0.3333333333],
        "b": [2, "x"],
    }
    for final in finals.values():
        for key in ("top1", "mean_class_acc", "wall_s"):
            assert len(repr(final[key]).replace(".", "").lstrip("0")) <= 10, key


def test_a_run_folder_has_its_curves_and_a_report_a_person_reads(
    runs: dict[str, Path], finals: dict[str, dict[str, Any]]
) -> None:
    demo = runs["demo"]
    assert (demo / "curves.png").stat().st_size > 10_000
    report = (demo / "report.md").read_text()
    assert run_summary(finals["demo"]) in report
    assert "![per_class.png](per_class.png)" in report and "![curves.png](curves.png)" in report
    assert "| `train.epochs` | 11 | 1 |" in report  # the demo's 11 epochs, shortened to 1
    assert "| `loss.reweight_epoch` | 8 | 1 |" in report  # DRW scaled into the short run
    assert "No recipe to compare." in (runs["full"] / "report.md").read_text()


def test_a_run_records_the_commit_it_ran_at(finals: dict[str, dict[str, Any]]) -> None:
    """In a git checkout (CI's clean clone) the commit is HEAD's hash, never 'unknown'."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the commit is 'unknown' by design")
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", finals["full"]["commit"])


def test_tensorboard_scalars_are_the_metrics(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    cfg = load_config(None, [*_overrides(tmp_path), "train.epochs=2", "probe.enabled=false",
                             "log.tensorboard=true"])  # fmt: skip
    run = train(cfg)
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    loss = events.Scalars("train/train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([m["train_loss"] for m in metrics], rel=1e-6)
    assert events.Scalars("test/top1")[-1].value == pytest.approx(metrics[-1]["top1"], rel=1e-6)


def test_tensorboard_missing_is_one_line_before_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from longtail.errors import LongtailError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    cfg = load_config(None, [*_overrides(tmp_path), "log.tensorboard=true"])
    with pytest.raises(LongtailError, match="needs the tensorboard package: pip install"):
        train(cfg)
    assert not (tmp_path / "runs").exists()

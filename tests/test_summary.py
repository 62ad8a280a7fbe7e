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
def finals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """A run at full length (no recipe to be shorter than) and a shortened one (2 steps)."""
    root = tmp_path_factory.mktemp("summary")
    write_idx(root / "idx", n_train_per_class=40, n_test_per_class=4)
    runs = {
        "full": train(load_config(None, _overrides(root))),
        "short": train(load_config(None, [*_overrides(root), "train.max_steps_per_epoch=2"])),
    }
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
        round(balanced["knn_top1"], 2),
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

"""The run's objective and per-epoch switches: DRW weights, DRS sampling, progressive sampling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from data.fixtures import write_idx
from longtail.config import LossConfig, load_config
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.losses import class_balanced_weights
from longtail.losses.objective import Objective
from longtail.train.build import build_training
from longtail.train.trainer import train
from tiny_runs import tiny_run

COUNTS = [50, 20, 5]


def test_drw_switches_exactly_at_the_epoch() -> None:
    objective = Objective(LossConfig(reweight="class_balanced", reweight_epoch=3), COUNTS)
    logits, labels = torch.randn(12, 3, dtype=torch.float64), torch.arange(12) % 3
    for epoch in range(6):
        objective.set_epoch(epoch, torch.device("cpu"))
        got = objective(logits, labels)
        if epoch < 3:
            assert torch.allclose(got, F.cross_entropy(logits, labels))
        else:
            w = class_balanced_weights(COUNTS, 0.9999).double()
            assert torch.allclose(got, F.cross_entropy(logits, labels, weight=w))


def test_ldam_drw_uses_the_weighted_mean() -> None:
    cfg = LossConfig(name="ldam", reweight="class_balanced", reweight_epoch=1, max_margin=0.0)
    objective = Objective(cfg, COUNTS)
    cos = torch.rand(9, 3) * 2 - 1
    labels = torch.arange(9) % 3
    objective.set_epoch(1, torch.device("cpu"))
    w = class_balanced_weights(COUNTS, 0.9999)
    assert torch.allclose(objective(cos, labels), F.cross_entropy(30 * cos, labels, weight=w))


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("objective")
    write_idx(root, n_train_per_class=30, n_test_per_class=3)
    return root


def _overrides(idx_root: Path, *extra: str) -> list[str]:
    return tiny_run(idx_root, *extra)


def test_drs_and_progressive_switch_the_sampler(idx_root: Path) -> None:
    cfg = load_config(None, _overrides(idx_root, "train.resample_epoch=2", "train.epochs=4"))
    data = prepare_data(cfg.data, torch.device("cpu"))
    parts = build_training(cfg, data, torch.device("cpu"))
    modes = []
    for epoch in range(4):
        parts.start_epoch(cfg.train, epoch, torch.device("cpu"))
        modes.append(parts.loader.sampler.mode)
    assert modes == ["random", "random", "class_balanced", "class_balanced"]
    cfg = load_config(None, _overrides(idx_root, "train.sampler=progressive", "train.epochs=4"))
    parts = build_training(cfg, data, torch.device("cpu"))
    progress = []
    for epoch in range(4):
        parts.start_epoch(cfg.train, epoch, torch.device("cpu"))
        progress.append(parts.loader.sampler.progress)
    assert progress == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize(
    "extra",
    [
        ["loss.name=focal", "loss.gamma=1.0"],
        ["loss.name=class_balanced", "loss.cb_type=focal"],
        [
            "loss.name=ldam",
            "model.classifier=cosine",
            "loss.reweight=class_balanced",
            "loss.reweight_epoch=1",
        ],
        ["loss.name=logit_adjusted"],
        ["loss.name=balanced_softmax", "eval.posthoc_tau=1.0"],
    ],
    ids=lambda e: e[0].split("=")[1],
)
def test_every_loss_trains(idx_root: Path, tmp_path: Path, extra: list[str]) -> None:
    cfg = load_config(None, _overrides(idx_root, "train.epochs=2", f"out_dir={tmp_path}", *extra))
    final = json.loads((train(cfg) / "final.json").read_text())
    assert 0.0 <= final["top1"] <= 100.0


def test_inconsistent_loss_settings_are_refused() -> None:
    with pytest.raises(LongtailError, match="model.classifier=cosine"):
        load_config(None, ["loss.name=ldam"])
    with pytest.raises(LongtailError, match="loss.reweight applies to"):
        load_config(None, ["loss.name=balanced_softmax", "loss.reweight=class_balanced"])
    with pytest.raises(LongtailError, match="train.sampler=random"):
        load_config(None, ["train.sampler=sqrt", "train.resample_epoch=3"])

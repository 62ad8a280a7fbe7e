"""Learning-rate schedule factors against the LDAM-DRW recipe written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from longtail.config import ScheduleConfig
from longtail.optim.param_groups import param_groups
from longtail.optim.schedules import lr_factor


def test_ldam_step_schedule_per_epoch() -> None:
    cfg = ScheduleConfig(kind="step", warmup_epochs=5, milestones=[160, 180], gamma=0.01)
    spe = 10
    # end of each warm-up epoch reaches (epoch + 1) / 5, as LDAM-DRW's per-epoch warm-up
    for epoch in range(5):
        assert lr_factor(epoch * spe + spe - 1, spe, 200, cfg) == pytest.approx((epoch + 1) / 5)
    assert lr_factor(5 * spe, spe, 200, cfg) == 1.0
    assert lr_factor(159 * spe + 9, spe, 200, cfg) == 1.0
    assert lr_factor(160 * spe, spe, 200, cfg) == pytest.approx(1e-2)
    assert lr_factor(179 * spe, spe, 200, cfg) == pytest.approx(1e-2)
    assert lr_factor(180 * spe, spe, 200, cfg) == pytest.approx(1e-4)
    assert lr_factor(199 * spe + 9, spe, 200, cfg) == pytest.approx(1e-4)


def test_warmup_is_linear_and_monotone() -> None:
    cfg = ScheduleConfig(kind="constant", warmup_epochs=2)
    factors = [lr_factor(s, 4, 10, cfg) for s in range(12)]
    assert factors[:8] == pytest.approx([(s + 1) / 8 for s in range(8)])
    assert factors[8:] == [1.0] * 4


def test_cosine_endpoints_and_midpoint() -> None:
    cfg = ScheduleConfig(kind="cosine", warmup_epochs=0, min_lr_factor=0.1)
    assert lr_factor(0, 100, 10, cfg) == pytest.approx(1.0)
    mid = lr_factor(500, 100, 10, cfg)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(999, 100, 10, cfg) == pytest.approx(0.1, abs=1e-4)


def test_warmup_longer_than_run_is_clipped() -> None:
    cfg = ScheduleConfig(kind="step", warmup_epochs=5, milestones=[])
    assert lr_factor(9, 5, 2, cfg) == pytest.approx(1.0)


def test_a_warmup_shorter_than_one_step_never_exceeds_the_base_rate() -> None:
    """0.05 epoch of 10 steps is half a step (a 200-epoch recipe's 5 epochs scaled to 2)."""
    cfg = ScheduleConfig(kind="constant", warmup_epochs=0.05)
    assert [lr_factor(s, 10, 2, cfg) for s in range(3)] == [1.0, 1.0, 1.0]


def test_param_groups_split_1d() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    groups = param_groups(model, 5e-4, no_decay_1d=True)
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim >= 2 for p in groups[0]["params"])
    assert all(p.ndim == 1 for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    (single,) = param_groups(model, 5e-4, no_decay_1d=False)
    assert len(single["params"]) == len(list(model.parameters()))

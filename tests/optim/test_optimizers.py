"""SGD, AdamW and LARS as ``optim.name`` builds them; LARS against its formula, step by step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.optim.optimizers import LARS, build_optimizer
from longtail.run_folder import RunFolder
from longtail.train.trainer import resume, train


def _lars_loop(
    params: list[torch.Tensor], grads: list[list[torch.Tensor]], lrs: list[float], m: float,
    wd: float, eta: float, adapt: list[bool],
) -> list[torch.Tensor]:  # fmt: skip
    """You et al. 2017 in VISSL's form (the rate outside the momentum), per tensor, per step."""
    w = [p.clone() for p in params]
    v = [None] * len(w)
    for lr, step in zip(lrs, grads, strict=True):
        for i, g in enumerate(step):
            d = g + wd * w[i]
            q = 1.0
            if adapt[i] and float(w[i].norm()) > 0 and float(d.norm()) > 0:
                q = eta * float(w[i].norm()) / float(d.norm())
            v[i] = q * d if v[i] is None else m * v[i] + q * d
            w[i] = w[i] - lr * v[i]
    return w


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lars_matches_its_formula(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    start = [torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(3, generator=g, dtype=dtype)]
    grads = [[torch.randn(4, 3, generator=g, dtype=dtype), torch.randn(3, generator=g, dtype=dtype)]
             for _ in range(4)]  # fmt: skip
    params = [nn.Parameter(p.clone()) for p in start]
    opt = LARS([{"params": [params[0]]}, {"params": [params[1]], "adapt": False}],
               lr=0.5, momentum=0.9, weight_decay=1e-2, eta=0.02)  # fmt: skip
    lrs = [0.5, 0.25, 1.0, 0.1]  # a schedule moves the rate: where it enters the update shows
    for lr, step in zip(lrs, grads, strict=True):
        for group in opt.param_groups:
            group["lr"] = lr
        for p, grad in zip(params, step, strict=True):
            p.grad = grad.clone()
        opt.step()
    want = _lars_loop(start, grads, lrs, 0.9, 1e-2, 0.02, [True, False])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for got, expected in zip(params, want, strict=True):
        torch.testing.assert_close(got.detach(), expected, rtol=tol, atol=tol)


def test_lars_degenerate_cases_take_plain_steps() -> None:
    """A zero weight or a zero gradient has no trust ratio: the factor is 1, no NaN."""
    zero = nn.Parameter(torch.zeros(3))
    opt = LARS([zero], lr=0.1, momentum=0.0, eta=0.001)
    zero.grad = torch.ones(3)
    opt.step()
    assert torch.equal(zero.detach(), torch.full((3,), -0.1))
    still = nn.Parameter(torch.ones(3))
    opt = LARS([still], lr=0.1, momentum=0.9)
    still.grad = torch.zeros(3)
    opt.step()
    assert torch.equal(still.detach(), torch.ones(3))


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_optim_name_builds_each_optimiser() -> None:
    for name, kind in (("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW), ("lars", LARS)):
        cfg = load_config(None, [f"optim.name={name}", "optim.no_decay_1d=true"]).optim
        opt = build_optimizer(_model(), cfg)
        assert isinstance(opt, kind)
        assert [g["weight_decay"] for g in opt.param_groups] == [cfg.weight_decay, 0.0]
    lars = build_optimizer(_model(), load_config(None, ["optim.name=lars",
                                                        "optim.no_decay_1d=true"]).optim)  # fmt: skip
    assert [g["adapt"] for g in lars.param_groups] == [True, False]  # SimCLR's exclusion
    adamw = build_optimizer(_model(), load_config(None, ["optim.name=adamw",
                                                         "optim.betas=[0.8,0.99]"]).optim)  # fmt: skip
    assert adamw.param_groups[0]["betas"] == (0.8, 0.99)


def test_bad_optimiser_settings_are_one_line() -> None:
    with pytest.raises(LongtailError, match="optim.name='adam' is not one of sgd, adamw, lars"):
        load_config(None, ["optim.name=adam"])
    with pytest.raises(LongtailError, match="optim.nesterov applies to sgd"):
        load_config(None, ["optim.name=adamw", "optim.nesterov=true"])
    with pytest.raises(LongtailError, match="optim.betas must be two values"):
        load_config(None, ["optim.name=adamw", "optim.betas=[0.9]"])


@pytest.mark.parametrize("name", ["adamw", "lars"])
def test_a_run_trains_and_resumes_exactly_with_each_optimiser(name: str, tmp_path: Path) -> None:
    """Two epochs in one go equal one epoch, stopped, then resumed (the optimiser's state saved)."""
    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    base = ["data.dataset=fashion_mnist", f"data.root={tmp_path / 'idx'}", "data.cache_dir=null",
            "data.imbalance_ratio=3", "model.name=resnet20", "model.kwargs.width=0.25",
            "train.batch_size=16", "train.device=cpu", "train.progress=false",
            "probe.enabled=false", f"optim.name={name}", "optim.lr=0.01",
            "schedule.warmup_epochs=0", "train.precision=fp32"]  # fmt: skip
    whole = train(load_config(None, [*base, "train.epochs=2", f"out_dir={tmp_path / 'a'}"]))
    half = train(load_config(None, [*base, "train.epochs=1", f"out_dir={tmp_path / 'b'}"]))
    resumed = resume(half, ["train.epochs=2"])
    losses = [[r["train_loss"] for r in RunFolder.open(run).read_metrics()]
              for run in (whole, resumed)]  # fmt: skip
    assert all(math.isfinite(v) for v in losses[0]) and losses[0] == losses[1]

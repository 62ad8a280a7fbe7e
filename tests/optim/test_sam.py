"""SAM / ASAM / rwSAM step against a hand-written two-pass reference."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError
from longtail.optim.sam import frozen_batchnorm_stats, sam_perturbation, sam_step

TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _brute_force_perturbation(
    params: Sequence[torch.Tensor], rho: float, adaptive: bool, eta: float
) -> list[torch.Tensor | None]:
    """e = rho T^2 g / ||T g|| with one norm over every element of every gradient, in float64."""
    total = 0.0
    for p in params:
        if p.grad is not None:
            for w, g in zip(p.detach().double().flatten(), p.grad.double().flatten(), strict=True):
                t = abs(float(w)) + eta if adaptive else 1.0
                total += (t * float(g)) ** 2
    norm = total**0.5
    out: list[torch.Tensor | None] = []
    for p in params:
        if p.grad is None:
            out.append(None)
            continue
        metric = p.detach().double().abs() + eta if adaptive else torch.ones_like(p).double()
        out.append(rho * metric * metric * p.grad.double() / (norm + 1e-12))
    return out


def _model(dtype: torch.dtype, momentum: float | None = 0.1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 8), nn.BatchNorm1d(8, momentum=momentum), nn.ReLU(), nn.Linear(8, 3)
    ).to(dtype)


def _batch(dtype: torch.dtype, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("adaptive", "eta"), [(False, 0.0), (True, 0.0), (True, 0.01)])
def test_perturbation_matches_formula(dtype: torch.dtype, adaptive: bool, eta: float) -> None:
    g = torch.Generator().manual_seed(2)
    params = [torch.randn(shape, generator=g, dtype=dtype) for shape in [(3, 4), (4,), (2,)]]
    for p in params[:2]:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
    got = sam_perturbation(params, 0.3, adaptive, eta)
    ref = _brute_force_perturbation(params, 0.3, adaptive, eta)
    assert got[2] is None and ref[2] is None
    for e, r in zip(got[:2], ref[:2], strict=True):
        assert e is not None and r is not None and e.dtype == dtype
        torch.testing.assert_close(e.double(), r, rtol=TOL[dtype] * 10, atol=0.0)
    norm = torch.linalg.vector_norm(torch.cat([e.flatten() for e in got[:2] if e is not None]))
    if not adaptive:  # plain SAM lands exactly on the rho-sphere
        assert norm.item() == pytest.approx(0.3, rel=TOL[dtype] * 10)


def test_zero_gradients_give_zero_perturbation() -> None:
    params = [torch.randn(3, 2), torch.randn(4)]
    for p in params:
        p.grad = torch.zeros_like(p)
    for adaptive in (False, True):
        for e in sam_perturbation(params, 2.0, adaptive):
            assert e is not None and torch.equal(e, torch.zeros_like(e))
    assert sam_perturbation([torch.randn(2)], 1.0) == [None]


def _manual_sam_sgd(
    model: nn.Module, batches: list, rho: float, adaptive: bool, lr: float, mom: float, wd: float
) -> nn.Module:
    """SAM written out by hand: grad at w, e, grad at w + e on a copy, then SGD with momentum."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    for step, (x, y) in enumerate(batches):
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        eps = _brute_force_perturbation(params, rho, adaptive, 0.0)
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            for q, e in zip(shifted.parameters(), eps, strict=True):
                q.add_(e.to(q.dtype))  # type: ignore[union-attr]
        update_grads = torch.autograd.grad(
            F.cross_entropy(shifted(x), y), list(shifted.parameters())
        )
        with torch.no_grad():
            for p, g, buf in zip(params, update_grads, buffers, strict=True):
                d = g + wd * p
                buf.copy_(d if step == 0 else mom * buf + d)
                p.sub_(lr * buf)
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_matches_manual_two_pass_sgd(dtype: torch.dtype, adaptive: bool) -> None:
    model = _model(dtype)
    reference = _manual_sam_sgd(
        model, [_batch(dtype), _batch(dtype, 12)], 0.5, adaptive, lr=0.1, mom=0.9, wd=5e-4
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for x, y in [_batch(dtype), _batch(dtype, 12)]:

        def loss(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        out = sam_step(opt, loss, loss, rho=0.5, adaptive=adaptive, model=model)
        assert out.requires_grad is False
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=TOL[dtype], atol=TOL[dtype])


def test_parameters_are_restored_bitwise_before_the_base_step() -> None:
    model = _model(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = _batch(torch.float32)
    seen: list[list[torch.Tensor]] = []

    def update_loss() -> torch.Tensor:
        seen.append([p.detach().clone() for p in model.parameters()])
        return F.cross_entropy(model(x), y)

    sam_step(opt, lambda: F.cross_entropy(model(x), y), update_loss, rho=3.0, adaptive=True)
    assert any(not torch.equal(s, b) for s, b in zip(seen[0], before, strict=True))
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_second_pass_leaves_batchnorm_statistics_alone(momentum: float | None) -> None:
    model = _model(torch.float32, momentum)
    once = copy.deepcopy(model)
    x, y = _batch(torch.float32)
    once(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = lambda: F.cross_entropy(model(x), y)  # noqa: E731
    sam_step(opt, loss, loss, rho=0.5, model=model)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    bn, bn_once = model[1].state_dict(), once[1].state_dict()
    assert model[1].momentum == momentum
    for name in stats:
        assert torch.equal(bn[name], bn_once[name]), name
    with frozen_batchnorm_stats(model):
        model(x * 5 + 3)
    bn = model[1].state_dict()
    for name in stats:
        assert torch.equal(bn[name], bn_once[name]), name


def _rwsam_perturbed_point(weights: torch.Tensor, dtype: torch.dtype) -> tuple[list, list]:
    """(w + e seen by the update pass, parameters after the step) with loss sum(w_i l_i) / N."""
    model = _model(dtype)
    x, y = _batch(dtype, 24)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen: list[list[torch.Tensor]] = []

    def weighted() -> torch.Tensor:
        per_example = F.cross_entropy(model(x), y, reduction="none")
        return (weights.to(dtype) * per_example).sum() / len(y)

    def unweighted() -> torch.Tensor:
        seen.append([p.detach().clone() for p in model.parameters()])
        return F.cross_entropy(model(x), y)

    sam_step(opt, weighted, unweighted, rho=0.5, adaptive=True, model=model)
    return seen[0], [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rwsam_weights_change_the_perturbation(dtype: torch.dtype) -> None:
    # the reference code's 'simplified' loss drops the weights; ours must not
    ones = torch.ones(24)
    skewed = torch.linspace(0.2, 5.0, 24)
    point_ones, after_ones = _rwsam_perturbed_point(ones, dtype)
    point_skewed, after_skewed = _rwsam_perturbed_point(skewed, dtype)
    point_scaled, after_scaled = _rwsam_perturbed_point(7.0 * ones, dtype)
    gap = max((a - b).abs().max().item() for a, b in zip(point_ones, point_skewed, strict=True))
    assert gap > 1e-3
    assert any(not torch.allclose(a, b) for a, b in zip(after_ones, after_skewed, strict=True))
    # e is normalised by ||g||: only the relative weights matter
    for a, b in zip(point_ones + after_ones, point_scaled + after_scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("rho", [0.0, -0.1, float("nan")])
def test_non_positive_rho_raises(rho: float) -> None:
    model = _model(torch.float32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batch(torch.float32)
    loss = lambda: F.cross_entropy(model(x), y)  # noqa: E731
    with pytest.raises(LongtailError, match="sam rho must be > 0"):
        sam_step(opt, loss, loss, rho=rho)
    with pytest.raises(LongtailError, match="sam rho must be > 0"):
        sam_perturbation(model.parameters(), rho)

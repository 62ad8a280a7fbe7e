"""SimSiam's loss against a per-example loop from eqs. 1-2, its stop-gradient, weights and edge cases."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from longtail.errors import LongtailError
from longtail.losses import SimSiamLoss, negative_cosine
from losses.reference import central_difference, dot, rows, unit

DTYPES = [torch.float32, torch.float64]


def near(expected: float, dtype: torch.dtype) -> Any:
    """pytest.approx at the tolerance of ``dtype`` (float32 rounding, or float64's)."""
    rel, abs_ = (1e-12, 1e-12) if dtype == torch.float64 else (1e-5, 1e-6)
    return pytest.approx(expected, rel=rel, abs=abs_)


def simsiam_loop(
    p1: torch.Tensor,
    p2: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    weights: list[float] | None = None,
) -> float:
    """sum_i w_i (1/2 D(p1_i, z2_i) + 1/2 D(p2_i, z1_i)) / N, D(p, z) = -<p/|p|, z/|z|>, w = 1."""
    total = 0.0
    vectors = zip(rows(p1), rows(p2), rows(z1), rows(z2), strict=True)
    for i, (a1, a2, b1, b2) in enumerate(vectors):
        d12 = -dot(unit(a1), unit(b2))
        d21 = -dot(unit(a2), unit(b1))
        total += (1.0 if weights is None else weights[i]) * (0.5 * d12 + 0.5 * d21)
    return total / len(rows(p1))


def views(n: int, d: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # raw, unnormalised outputs of different scales: the loss normalises
    return [(s * torch.randn(n, d, generator=g)).to(dtype) for s in (0.3, 2.0, 5.0, 1.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "d"), [(1, 3), (7, 16), (32, 5)])
def test_matches_loop(dtype: torch.dtype, n: int, d: int) -> None:
    for seed in range(3):
        p1, p2, z1, z2 = views(n, d, dtype, seed)
        got = SimSiamLoss()(p1, p2, z1, z2)
        assert got.dtype == dtype and got.dim() == 0
        assert float(got) == near(simsiam_loop(p1, p2, z1, z2), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_cosine_per_row(dtype: torch.dtype) -> None:
    p, _, z, _ = views(9, 6, dtype, 4)
    got = negative_cosine(p, z)
    assert got.shape == (9,)
    expected = [-dot(unit(a), unit(b)) for a, b in zip(rows(p), rows(z), strict=True)]
    for g, e in zip(got.tolist(), expected, strict=True):
        assert g == near(e, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_matches_loop_and_is_divided_by_n(dtype: torch.dtype) -> None:
    p1, p2, z1, z2 = views(10, 8, dtype, 1)
    g = torch.Generator().manual_seed(9)
    for weights in [torch.rand(10, generator=g) * 3, torch.zeros(10), 1.2 ** torch.arange(10.0)]:
        weights[2] = 0.0
        got = SimSiamLoss()(p1, p2, z1, z2, weights=weights.to(dtype))
        assert got.dtype == dtype
        expected = simsiam_loop(p1, p2, z1, z2, weights.double().tolist())
        assert float(got) == near(expected, dtype)
    # one-hot weight: L_j / N, not L_j (the division is by N, not by sum w)
    onehot = torch.zeros(10, dtype=dtype)
    onehot[3] = 1.0
    single = simsiam_loop(p1[3:4], p2[3:4], z1[3:4], z2[3:4])
    assert float(SimSiamLoss()(p1, p2, z1, z2, onehot)) == near(single / 10, dtype)


def test_ones_equal_unweighted() -> None:
    p1, p2, z1, z2 = views(16, 8, torch.float32, 2)
    plain = SimSiamLoss()(p1, p2, z1, z2)
    ones = SimSiamLoss()(p1, p2, z1, z2, weights=torch.ones(16))
    assert float(ones) == pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_stop_gradient_blocks_z_and_p_gradient_matches(weighted: bool) -> None:
    p1, p2, z1, z2 = (t.requires_grad_() for t in views(6, 4, torch.float64, 3))
    weights = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0, 1.5], dtype=torch.float64)
    w = weights if weighted else None
    SimSiamLoss()(p1, p2, z1, z2, w).backward()
    assert z1.grad is None and z2.grad is None  # sg(z): no gradient at all into the projections
    assert p1.grad is not None and p2.grad is not None

    # manual autograd of a per-example torch loop with z detached
    q1, q2 = p1.detach().clone().requires_grad_(), p2.detach().clone().requires_grad_()
    wl = weights.tolist() if weighted else [1.0] * 6
    total = sum(
        wl[i]
        * (
            -0.5 * torch.dot(q1[i] / q1[i].norm(), z2[i].detach() / z2[i].detach().norm())
            - 0.5 * torch.dot(q2[i] / q2[i].norm(), z1[i].detach() / z1[i].detach().norm())
        )
        for i in range(6)
    )
    assert isinstance(total, torch.Tensor)
    (total / 6).backward()
    torch.testing.assert_close(p1.grad, q1.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p2.grad, q2.grad, rtol=1e-12, atol=1e-14)

    # and central differences of the pure-python loop, independent of autograd
    numeric = central_difference(
        lambda x: simsiam_loop(x, p2, z1, z2, wl), p1.detach().clone(), h=1e-6
    )
    torch.testing.assert_close(
        p1.grad.reshape(-1), torch.tensor(numeric, dtype=torch.float64), rtol=1e-6, atol=1e-8
    )


def test_identical_directions_give_minus_one() -> None:
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    scale = torch.rand(8, 1) * 10 + 0.1  # any positive multiple of the other view's z
    got = SimSiamLoss()(z2 * scale, z1 * scale.flip(0), z1, z2)
    assert float(got) == pytest.approx(-1.0, abs=1e-6)
    # opposite directions: the maximum +1
    assert float(SimSiamLoss()(-z2, -z1, z1, z2)) == pytest.approx(1.0, abs=1e-6)


def test_zero_vectors_give_finite_loss_and_gradient() -> None:
    p1, p2, z1, z2 = views(5, 4, torch.float32, 5)
    p1[0], z2[1], z1[2] = 0.0, 0.0, 0.0
    p1.requires_grad_()
    p2.requires_grad_()
    loss = SimSiamLoss()(p1, p2, z1, z2)
    loss.backward()
    assert torch.isfinite(loss)
    assert p1.grad is not None and p2.grad is not None
    assert torch.isfinite(p1.grad).all() and torch.isfinite(p2.grad).all()
    # a zero vector has cosine 0 with everything, as the loop's unit() gives
    assert float(loss.detach()) == pytest.approx(simsiam_loop(p1, p2, z1, z2), rel=1e-5, abs=1e-6)


def test_bf16_inputs_give_float32_close_to_fp32() -> None:
    full = views(64, 32, torch.float32, 6)
    h1, h2, h3, h4 = half = [t.to(torch.bfloat16) for t in full]
    got = SimSiamLoss()(*half)
    assert got.dtype == torch.float32
    # exact in float32 on the bf16-rounded values, close (bf16 rounding) to the fp32 inputs
    assert float(got) == pytest.approx(simsiam_loop(h1, h2, h3, h4), rel=1e-5, abs=1e-6)
    assert float(got) == pytest.approx(float(SimSiamLoss()(*full)), abs=1e-2)
    weighted = SimSiamLoss()(*half, weights=torch.ones(64, dtype=torch.bfloat16))
    assert weighted.dtype == torch.float32


def test_autocast_keeps_float32() -> None:
    full = views(16, 8, torch.float32, 7)
    expected = float(SimSiamLoss()(*full))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = SimSiamLoss()(*full)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_user_errors_are_one_line_longtail_errors() -> None:
    p1, p2, z1, z2 = views(4, 3, torch.float32, 8)
    loss = SimSiamLoss()
    bad_calls = [
        lambda: loss(p1, p2, z1, z2, weights=torch.ones(3)),
        lambda: loss(p1, p2, z1, z2, weights=torch.ones(4, 1)),
        lambda: loss(p1, p2, z1, z2, weights=torch.tensor([1.0, -0.5, 1.0, 1.0])),
        lambda: loss(p1, p2, z1, z2, weights=torch.tensor([1.0, math.nan, 1.0, 1.0])),
        lambda: loss(p1, p2, z1, z2, weights=torch.tensor([1.0, math.inf, 1.0, 1.0])),
        lambda: loss(p1, p2, z1, z2, weights=[1.0, 1.0, 1.0, 1.0]),  # type: ignore[arg-type]
        lambda: loss(p1, p2[:3], z1, z2),
        lambda: loss(p1, p2, z1, torch.randn(4, 5)),
        lambda: loss(p1[0], p2[0], z1[0], z2[0]),
        lambda: loss(p1[:0], p2[:0], z1[:0], z2[:0]),
        lambda: negative_cosine(p1, z1[:, :2]),
    ]
    for call in bad_calls:
        with pytest.raises(LongtailError) as info:
            call()
        assert "\n" not in str(info.value)

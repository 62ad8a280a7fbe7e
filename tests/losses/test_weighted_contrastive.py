"""Per-anchor weights on the batch contrastive losses against a weighted L_out loop (rwSAM)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from longtail.errors import LongtailError
from longtail.losses import InfoNCELoss, KCLLoss, SupConLoss
from longtail.losses.kernel import mean_over_valid, weighted_mean_over_valid
from longtail.losses.masks import build_contrast_set, kcl_positive_mask
from losses.reference import l_out_loop, rows

TAUS = [0.07, 0.5]
DTYPES = [torch.float32, torch.float64]
DIM = 6
LABELS = [0, 0, 0, 1, 1, 2, 3, 3, 4, 0, 0, 0, 1, 1, 2, 3, 3, 4]  # class 4: one image x 2 views


def near(expected: float, dtype: torch.dtype) -> Any:
    """pytest.approx at the tolerance of ``dtype`` (float32 rounding, or float64's)."""
    rel, abs_ = (1e-10, 1e-10) if dtype == torch.float64 else (2e-5, 2e-5)
    return pytest.approx(expected, rel=rel, abs=abs_)


def weighted_l_out_loop(
    features: torch.Tensor,
    candidates: torch.Tensor,
    tau: float,
    is_self: Callable[[int, int], bool],
    is_positive: Callable[[int, int], bool],
    weights: list[float],
) -> float:
    """sum_i w_i L_i / #{i : |P(i)| > 0}, L_i SupCon's L_out (Khosla et al. 2020, eq. 2)."""
    return l_out_loop(rows(features), rows(candidates), tau, is_self, is_positive, weights)


def setting(kind: str, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Features, labels, and refs: none, a simulated all-gather (offset 3), or a queue."""
    g = torch.Generator().manual_seed(seed)
    features = (3.0 * torch.randn(len(LABELS), DIM, generator=g)).to(dtype)
    labels = torch.tensor(LABELS)
    other = torch.randn(7, DIM, generator=g).to(dtype)
    other_labels = torch.randint(0, 6, (7,), generator=g)
    refs: dict[str, Any] = {}
    if kind == "gathered":
        refs = {
            "ref_features": torch.cat([other[:3], features, other[3:]]),
            "ref_labels": torch.cat([other_labels[:3], labels, other_labels[3:]]),
            "self_offset": 3,
        }
    elif kind == "queue":
        refs = {"ref_features": other, "ref_labels": other_labels, "self_offset": None}
    return features, labels, refs


def loop_for(
    features: torch.Tensor, labels: torch.Tensor, refs: dict, tau: float, weights: torch.Tensor
) -> float:
    candidates = refs.get("ref_features", features)
    ref_y = refs.get("ref_labels", labels).tolist()
    offset = refs.get("self_offset", 0) if refs else 0
    y = labels.tolist()
    return weighted_l_out_loop(
        features,
        candidates,
        tau,
        lambda i, j: offset is not None and j == offset + i,
        lambda i, j: y[i] == ref_y[j],
        weights.double().tolist(),
    )


def weight_sets(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    onehot = torch.zeros(n)
    onehot[4] = 1.0
    return [torch.rand(n, generator=g) * 4, onehot, 1.2 ** torch.arange(float(n))]


@pytest.mark.parametrize("contrast", ["batch", "gathered", "queue"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_supcon_and_infonce_weighted_match_loop(
    tau: float, dtype: torch.dtype, contrast: str
) -> None:
    features, labels, refs = setting(contrast, dtype, 0)
    ids = torch.arange(9).repeat(2)
    for weights in weight_sets(len(LABELS), 1):
        got = SupConLoss(tau)(features, labels, **refs, anchor_weights=weights.to(dtype))
        assert got.dtype == dtype
        assert float(got) == near(loop_for(features, labels, refs, tau, weights), dtype)
        if contrast == "batch":  # InfoNCE: instance ids as labels
            got = InfoNCELoss(tau)(features, ids, anchor_weights=weights.to(dtype))
            assert float(got) == near(loop_for(features, ids, {}, tau, weights), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_kcl_weighted_matches_loop_on_its_drawn_positives(tau: float, dtype: torch.dtype) -> None:
    features, labels, _ = setting("batch", dtype, 2)
    ids = torch.arange(9).repeat(2)
    for k in [1, 2]:
        contrast = build_contrast_set(features, labels, None, None, None)
        mask = kcl_positive_mask(contrast, k, torch.Generator().manual_seed(k), ids, ids)
        drawn: list[list[bool]] = mask.tolist()
        for weights in weight_sets(len(LABELS), k):
            loss = KCLLoss(k=k, temperature=tau, generator=torch.Generator().manual_seed(k))
            got = loss(features, labels, instance_ids=ids, anchor_weights=weights.to(dtype))
            expected = weighted_l_out_loop(
                features,
                features,
                tau,
                lambda i, j: i == j,
                lambda i, j: drawn[i][j],  # noqa: B023 (called before the loop moves on)
                weights.double().tolist(),
            )
            assert float(got) == near(expected, dtype)


@pytest.mark.parametrize("contrast", ["batch", "gathered", "queue"])
def test_ones_equal_unweighted_and_none_is_unchanged(contrast: str) -> None:
    features, labels, refs = setting(contrast, torch.float64, 3)
    ids = torch.arange(9).repeat(2)
    ones = torch.ones(len(LABELS), dtype=torch.float64)
    cases: list[tuple[torch.nn.Module, dict]] = [
        (SupConLoss(0.1), {}),
        (InfoNCELoss(0.5), {}),
        (KCLLoss(k=100), {"instance_ids": ids} if contrast == "batch" else {}),
    ]
    for loss, extra in cases:
        plain = loss(features, labels, **refs, **extra)
        weighted = loss(features, labels, **refs, **extra, anchor_weights=ones)
        default = loss(features, labels, **refs, **extra, anchor_weights=None)
        assert float(weighted) == pytest.approx(float(plain), rel=1e-14)
        assert torch.equal(default, plain)


def test_weighted_mean_over_valid_matches_loop_and_none_is_bitwise() -> None:
    g = torch.Generator().manual_seed(5)
    for dtype in DTYPES:
        loss = torch.randn(11, generator=g).to(dtype)
        valid = torch.rand(11, generator=g) > 0.4
        weights = torch.rand(11, generator=g).to(dtype) * 2
        count = sum(valid.tolist())
        expected = sum(
            w * v * x
            for w, v, x in zip(weights.tolist(), valid.tolist(), loss.tolist(), strict=True)
        )
        got = weighted_mean_over_valid(loss, valid, weights)
        assert float(got) == near(expected / count, dtype)
        assert torch.equal(
            weighted_mean_over_valid(loss, valid, None), mean_over_valid(loss, valid)
        )
        assert torch.equal(weighted_mean_over_valid(loss, valid), mean_over_valid(loss, valid))


def test_no_valid_anchor_gives_zero_with_a_graph() -> None:
    loss = torch.randn(5, requires_grad=True)
    value = weighted_mean_over_valid(loss, torch.zeros(5, dtype=torch.bool), torch.ones(5))
    value.backward()
    assert float(value.detach()) == 0.0 and value.requires_grad
    assert loss.grad is not None and torch.equal(loss.grad, torch.zeros(5))
    features = torch.randn(6, DIM, requires_grad=True)
    out = SupConLoss()(features, torch.arange(6), anchor_weights=torch.rand(6))
    out.backward()
    assert float(out.detach()) == 0.0 and features.grad is not None


def test_gradcheck_weighted_float64() -> None:
    features = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 0, 2, 1, 0])
    weights = torch.tensor([0.5, 2.0, 0.0, 1.0, 3.0, 1.5, 0.2, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda f: SupConLoss(0.1)(f, labels, anchor_weights=weights), (features,)
    )


def test_bad_anchor_weights_are_one_line_longtail_errors() -> None:
    features, labels, refs = setting("gathered", torch.float32, 4)
    n = len(LABELS)
    bad = [
        torch.ones(n + 3),  # one per ref row instead of one per anchor
        torch.ones(n, 1),
        torch.full((n,), -1.0),
        torch.full((n,), math.nan),
        torch.full((n,), math.inf),
    ]
    for weights in bad:
        for loss in [SupConLoss(), InfoNCELoss(), KCLLoss(k=2)]:
            with pytest.raises(LongtailError) as info:
                loss(features, labels, **refs, anchor_weights=weights)
            assert "\n" not in str(info.value)

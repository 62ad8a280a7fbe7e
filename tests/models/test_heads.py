"""Classifier heads, tau-normalisation and the projection MLP against hand-written formulas."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from longtail.errors import LongtailError
from longtail.models import NormedLinear, ProjectionHead, build_classifier, tau_normalize


def test_tau_zero_is_identity_and_tau_one_gives_unit_rows() -> None:
    torch.manual_seed(0)
    weight = torch.randn(10, 64) * torch.linspace(0.1, 5.0, 10)[:, None]
    assert torch.equal(tau_normalize(weight, 0.0), weight)
    unit = tau_normalize(weight, 1.0)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(10))
    # Same directions: each row is a positive multiple of the original.
    torch.testing.assert_close(unit * weight.norm(dim=1, keepdim=True), weight)


@settings(max_examples=25, deadline=None, database=None)
@given(tau=st.floats(0.0, 2.0), seed=st.integers(0, 2**16))
def test_tau_normalize_matches_the_row_formula(tau: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    result = tau_normalize(weight, tau)
    for c in range(6):
        norm = sum(float(v) ** 2 for v in weight[c]) ** 0.5
        expected = weight[c] / norm**tau
        torch.testing.assert_close(result[c], expected)
        # Closed form for the new norm: ||w_c||^(1 - tau).
        assert result[c].norm().item() == pytest.approx(norm ** (1 - tau), rel=1e-9)


def test_tau_normalize_keeps_zero_rows_and_flattens_conv_rows() -> None:
    weight = torch.randn(3, 4, 1, 1)
    weight[1] = 0
    result = tau_normalize(weight, 1.0)
    assert torch.equal(result[1], torch.zeros(4, 1, 1))
    torch.testing.assert_close(result.flatten(1).norm(dim=1)[[0, 2]], torch.ones(2))
    with pytest.raises(LongtailError, match="one row per class"):
        tau_normalize(torch.randn(5), 1.0)


def test_normed_linear_gives_cosines() -> None:
    torch.manual_seed(0)
    head = NormedLinear(8, 3)
    x = torch.randn(5, 8)
    out = head(x)
    for b in range(5):
        for c in range(3):
            w = head.weight[c]
            cosine = (x[b] @ w) / (x[b].norm() * w.norm())
            assert out[b, c].item() == pytest.approx(cosine.item(), abs=1e-6)
    assert out.abs().max() <= 1.0 + 1e-6
    # Invariant to the scale of the features and of the class vectors: only directions matter.
    torch.testing.assert_close(head(7.5 * x), out)
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(3))  # LDAM's unit-norm init
    assert not any(name == "bias" for name, _ in head.named_parameters())


def test_build_classifier_kinds() -> None:
    assert isinstance(build_classifier("linear", 16, 4), nn.Linear)
    assert isinstance(build_classifier("cosine", 16, 4), NormedLinear)
    assert isinstance(build_classifier("cosine", 16, 0), nn.Identity)
    with pytest.raises(LongtailError, match="unknown classifier kind 'tau'"):
        build_classifier("tau", 16, 4)
    with pytest.raises(LongtailError, match="negative"):
        build_classifier("linear", 16, -2)


def test_projection_head_is_linear_relu_linear() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(12, 20, 6)
    first, _, second = head.net
    assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
    x = torch.randn(4, 12)
    hidden = (x @ first.weight.T + first.bias).clamp_min(0)
    torch.testing.assert_close(head(x), hidden @ second.weight.T + second.bias)


def test_projection_head_with_batch_norm() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(12, 20, 6, batch_norm=True).train()
    first, norm, _, second = head.net
    assert first.bias is None and isinstance(norm, nn.BatchNorm1d)
    x = torch.randn(8, 12)
    pre = x @ first.weight.T
    # Training-mode BN: batch mean and biased variance, weight 1 and bias 0 at init.
    normed = (pre - pre.mean(0)) / torch.sqrt(pre.var(0, unbiased=False) + norm.eps)
    expected = normed.clamp_min(0) @ second.weight.T + second.bias
    torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(LongtailError, match="must be positive"):
        ProjectionHead(12, 0, 6)

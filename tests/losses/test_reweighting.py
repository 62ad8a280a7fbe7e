"""Class-balanced weights (Cui et al. 2019) against the formula written as a loop."""

from __future__ import annotations

import pytest
import torch

from longtail.losses import class_balanced_weights


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_matches_effective_number_loop(beta: float) -> None:
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    expected = [w / sum(raw) * len(counts) for w in raw]
    got = class_balanced_weights(counts, beta)
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert float(got.sum()) == pytest.approx(len(counts), rel=1e-6)
    assert all(a <= b for a, b in zip(got.tolist(), got.tolist()[1:], strict=False))


def test_beta_zero_is_uniform_and_absent_class_gets_zero() -> None:
    assert class_balanced_weights([10, 5, 1], 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    w = class_balanced_weights([10, 0, 1], 0.9)
    assert w[1] == 0 and float(w.sum()) == pytest.approx(3.0)

"""Balancedness numbers vs direct computations (numpy.polyfit, group means by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longtail.eval.balancedness import balancedness

LT_100 = [500, 300, 150, 101, 100, 60, 20, 19, 10, 5, 3, 1] * 2  # 24 classes: shot groups apply


def test_perfectly_balanced_representation() -> None:
    out = balancedness(torch.full((24,), 73.0), LT_100)
    assert out["few_many_ratio"] == pytest.approx(1.0)
    assert out["slope"] == pytest.approx(0.0, abs=1e-12)
    assert out["cv"] == pytest.approx(0.0, abs=1e-12)


def test_equal_counts_give_no_slope_but_a_cv() -> None:
    acc = [50.0, 60.0, 70.0, 80.0] * 6
    out = balancedness(acc, [200] * 24)
    assert out["slope"] is None
    assert out["few_many_ratio"] is None  # no few classes
    assert out["cv"] == pytest.approx(float(np.std(acc) / np.mean(acc)))


def test_slope_ratio_and_cv_against_references() -> None:
    rng = np.random.default_rng(0)
    acc = rng.uniform(10, 90, size=24)
    out = balancedness(torch.tensor(acc), LT_100)
    counts = np.array(LT_100, dtype=float)
    assert out["slope"] == pytest.approx(np.polyfit(np.log10(counts), acc, 1)[0], rel=1e-9)
    few, many = acc[counts < 20].mean(), acc[counts > 100].mean()
    assert out["few_many_ratio"] == pytest.approx(few / many)
    assert out["cv"] == pytest.approx(acc.std() / acc.mean())


def test_ten_classes_use_tail_over_head_by_rank() -> None:
    counts = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # CIFAR-10-LT r=100
    acc = [95.0, 90.0, 85.0, 80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0]
    out = balancedness(acc, counts)
    assert out["few_many_ratio"] == pytest.approx(np.mean([40, 30, 20]) / np.mean([95, 90, 85]))
    assert out["slope"] is not None and out["slope"] > 0


def test_nan_classes_are_excluded_everywhere() -> None:
    rng = np.random.default_rng(1)
    acc = rng.uniform(10, 90, size=24)
    acc_nan = acc.copy()
    acc_nan[[0, 8, 15]] = math.nan
    keep = np.ones(24, dtype=bool)
    keep[[0, 8, 15]] = False
    counts = np.array(LT_100, dtype=float)
    out = balancedness(torch.tensor(acc_nan), LT_100)
    none_form = balancedness([None if math.isnan(a) else a for a in acc_nan], LT_100)
    assert out == none_form
    a, n = acc[keep], counts[keep]
    assert out["slope"] == pytest.approx(np.polyfit(np.log10(n), a, 1)[0], rel=1e-9)
    assert out["few_many_ratio"] == pytest.approx(a[n < 20].mean() / a[n > 100].mean())
    assert out["cv"] == pytest.approx(a.std() / a.mean())
    assert all(v is not None and not math.isnan(v) for v in out.values())

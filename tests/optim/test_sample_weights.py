"""rwSAM per-example weights against brute-force loops and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longtail.errors import LongtailError
from longtail.optim.sample_weights import (
    kde_log_density,
    kde_weights,
    knn_bandwidth,
    label_weights,
)


def _points(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _two_clusters(frequent: int = 180, rare: int = 20, d: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    a = 0.3 * torch.randn(frequent, d, generator=g)
    b = 0.3 * torch.randn(rare, d, generator=g)
    a[:, 0] += 3.0
    b[:, 1] += 3.0
    return torch.cat([a, b])


@pytest.mark.parametrize("chunk_size", [3, 4096])
def test_kde_log_density_matches_double_loop(chunk_size: int) -> None:
    x, h = _points(13, 4), 0.7
    ref = []
    for i in range(len(x)):
        terms = [-float(((x[i] - x[j]) ** 2).sum()) / (2 * h * h) for j in range(len(x)) if j != i]
        ref.append(math.log(sum(math.exp(t) for t in terms)) - math.log(len(x) - 1))
    got = kde_log_density(x, h, chunk_size=chunk_size)
    assert got.dtype == torch.float32 and got.shape == (13,)
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-6)


def test_kde_log_density_leaves_self_out() -> None:
    # a point with an exact duplicate is dense; a far-away point sees only the others
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0]], dtype=torch.float64)
    got = kde_log_density(x, bandwidth=1.0)
    assert got[0].item() == pytest.approx(math.log((1.0 + math.exp(-50.0)) / 2), rel=1e-6)
    assert got[2].item() == pytest.approx(math.log(math.exp(-50.0)), rel=1e-6)


@pytest.mark.parametrize(("neighbors", "chunk_size"), [(1, 4096), (3, 5), (50, 4)])
def test_knn_bandwidth_matches_sort(neighbors: int, chunk_size: int) -> None:
    x = _points(12, 3, seed=2)
    dist = torch.cdist(x, x).numpy()
    k = min(neighbors, len(x) - 1)
    kth = [np.sort(np.delete(dist[i], i))[k - 1] for i in range(len(x))]
    got = knn_bandwidth(x, neighbors=neighbors, chunk_size=chunk_size)
    assert got == pytest.approx(float(np.median(kth)), rel=1e-9)


def test_rare_cluster_gets_larger_weights() -> None:
    x = _two_clusters()
    w = kde_weights(x)
    assert w.dtype == torch.float32 and w.shape == (200,)
    assert w[180:].min() > w[:180].max()
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert (w.max() / w.mean()).item() <= 10.0 * (1 + 1e-6)


@pytest.mark.parametrize("max_weight", [1.0, 1.5, 3.0, 10.0])
def test_cap_is_the_largest_fixed_point(max_weight: float) -> None:
    # reference: uncapped weights p^-1 from our own KDE, cap found by iterating t <- c * mean(min(w, t))
    x = _two_clusters(d=4)
    f = torch.nn.functional.normalize(x.double(), dim=1)
    log_p = kde_log_density(f, knn_bandwidth(f)).double()
    raw = torch.exp(-(log_p - log_p.max()))
    t = raw.max()
    for _ in range(20000):
        t = max_weight * torch.minimum(raw, t).mean()
    ref = torch.minimum(raw, t)
    ref = ref / ref.mean()
    got = kde_weights(x, max_weight=max_weight)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-4)
    assert (got.max() / got.mean()).item() <= max_weight * (1 + 1e-6)
    assert got.mean().item() == pytest.approx(1.0, rel=1e-6)


def test_power_zero_gives_ones_and_huge_power_stays_finite() -> None:
    x = _two_clusters()
    assert torch.equal(kde_weights(x, power=0.0), torch.ones(200))
    w = kde_weights(x, power=1e6)
    assert bool(torch.isfinite(w).all())
    assert w.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert (w.max() / w.mean()).item() <= 10.0 * (1 + 1e-6)


def test_fixed_bandwidth_and_no_normalisation_match_the_formula() -> None:
    x = _points(30, 5, seed=3)
    log_p = kde_log_density(x, 1.3).double()
    ref = torch.exp(-2.0 * (log_p - log_p.mean()))
    ref = ref / ref.mean()
    got = kde_weights(x, power=2.0, bandwidth=1.3, normalize_features=False, max_weight=1e6)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5)


def test_weights_follow_a_permutation_of_the_points() -> None:
    x = _two_clusters()
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(kde_weights(x[perm], chunk_size=37), kde_weights(x)[perm])


def test_label_weights_closed_form() -> None:
    counts = [500, 100, 10, 0]
    labels = torch.tensor([0, 0, 1, 2, 2, 1, 0])
    for power in (0.0, 0.5, 1.0, 2.0):
        raw = np.array([counts[y] ** -power for y in labels.tolist()])
        got = label_weights(labels, counts, power=power)
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), raw / raw.mean(), rtol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: kde_weights(_points(10, 2), power=-1.0),
        lambda: kde_weights(_points(10, 2), power=math.inf),
        lambda: kde_weights(_points(10, 2), max_weight=0.5),
        lambda: kde_weights(_points(10, 2), bandwidth=0.0),
        lambda: kde_weights(_points(1, 2)),
        lambda: kde_log_density(_points(1, 2), 1.0),
        lambda: kde_log_density(torch.zeros(5), 1.0),
        lambda: kde_log_density(torch.tensor([[0.0], [math.nan]]), 1.0),
        lambda: knn_bandwidth(_points(1, 2)),
        lambda: knn_bandwidth(_points(5, 2), neighbors=0),
        lambda: knn_bandwidth(torch.zeros(6, 2)),
        lambda: label_weights(torch.tensor([0, 3]), [5, 4, 3, 0]),
        lambda: label_weights(torch.tensor([0, 4]), [5, 4, 3, 1]),
        lambda: label_weights(torch.tensor([-1, 0]), [5, 4]),
        lambda: label_weights(torch.tensor([0, 1]), [5, 4], power=-0.5),
        lambda: label_weights(torch.tensor([], dtype=torch.long), [5, 4]),
    ],
)
def test_bad_inputs_raise(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LongtailError):
        call()

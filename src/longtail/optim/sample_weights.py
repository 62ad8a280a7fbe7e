"""Per-example weights for rwSAM's perturbation loss: label-free (KDE) and label-based (oracle).

rwSAM (Liu, HaoChen, Gaidon, Ma, ICLR 2022) weights each example up by how rare it is, estimated
without labels by a Gaussian kernel density estimate in representation space. The paper's exact
estimator (feature layer, bandwidth, normalisation) was never published (anchors.md §4.1: the
reference code only loads a ``.npy`` of weights), so everything below is OUR documented reading:

* features: the caller's choice; the trainer passes the backbone's pooled, pre-projection features;
* features are L2-normalised (``normalize_features``), so distances live on the unit sphere;
* kernel: Gaussian ``exp(-||x_i - x_j||^2 / (2 h^2))``, leave-one-out (a point is not its own
  neighbour, otherwise every density has the same floor ``1/N`` and isolated points look dense);
* bandwidth: the median distance to the k-th nearest neighbour (:func:`knn_bandwidth`);
* weights ``w_i ~ p_i^-power``, capped at ``max_weight`` times their mean, normalised to mean 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.errors import LongtailError


def kde_log_density(features: Tensor, bandwidth: float, chunk_size: int = 4096) -> Tensor:
    """Leave-one-out Gaussian KDE log-density of every row of ``features`` [N, D] -> [N] float32.

    ``log p_i = logsumexp_{j != i}(-||x_i - x_j||^2 / (2 h^2)) - log(N - 1)``; the kernel's
    ``(2 pi h^2)^(D/2)`` constant is dropped (it cancels once weights are normalised). Rows are
    processed ``chunk_size`` at a time, so memory is O(chunk_size * N). Computed in float64 on the
    CPU and float32 elsewhere.
    """
    x = _as_points(features, "kde_log_density")
    _check_bandwidth(bandwidth)
    return _log_density(x.to(_work_dtype(x)), bandwidth, chunk_size).float()


def knn_bandwidth(features: Tensor, neighbors: int = 10, chunk_size: int = 4096) -> float:
    """Median over i of the distance from x_i to its ``neighbors``-th nearest other point.

    ``neighbors`` is clipped to N - 1. Why not Scott's or Silverman's rule: they shrink as
    ``N^(-1/(D+4))``, which in D = 512 is almost 1, so the bandwidth stays as wide as the data and
    every point gets the same density. The k-NN distance follows the data's actual local scale.
    """
    x = _as_points(features, "knn_bandwidth")
    if neighbors < 1:
        raise LongtailError(
            f"neighbors must be >= 1, got {neighbors}: set sam.neighbors to 1 or more"
        )
    h = _knn_bandwidth(x.to(_work_dtype(x)), min(neighbors, x.shape[0] - 1), chunk_size)
    if not h > 0:
        raise LongtailError(
            f"the {neighbors}-NN bandwidth is 0 (most points have that many exact duplicates): "
            "pass a positive bandwidth (sam.bandwidth) or raise sam.neighbors"
        )
    return h


def kde_weights(
    features: Tensor,
    *,
    power: float = 1.0,
    bandwidth: float | None = None,
    neighbors: int = 10,
    max_weight: float = 10.0,
    normalize_features: bool = True,
    chunk_size: int = 4096,
) -> Tensor:
    """rwSAM's label-free per-example weights [N] float32 on ``features``' device, mean 1.

    ``features`` [N, D] (the caller's layer; the trainer uses pooled pre-projection features).
    Order: f = L2-normalised features; h = ``bandwidth`` or ``knn_bandwidth(f, neighbors)``;
    ``log p = kde_log_density(f, h)``; ``w_i ~ exp(-power * log p_i)`` kept in log space; cap:
    ``w <- min(w, t)`` with the largest t that satisfies ``t = max_weight * mean(min(w, t))``
    (solved exactly, so no second clipping round is needed); finally ``w / mean(w)``. Hence
    ``max(w) <= max_weight`` and ``mean(w) = 1`` up to float32 rounding. ``power = 0`` gives ones;
    ``max_weight = 1`` gives ones. No step overflows, however large ``power`` is.
    """
    x = _as_points(features, "kde_weights")
    if not (math.isfinite(power) and power >= 0):
        raise LongtailError(f"weight power must be finite and >= 0, got {power}: set sam.power")
    if not (math.isfinite(max_weight) and max_weight >= 1):
        raise LongtailError(f"max_weight must be >= 1, got {max_weight}: set sam.max_weight")
    if power == 0:
        return torch.ones(x.shape[0], dtype=torch.float32, device=x.device)
    f = x.to(_work_dtype(x))
    if normalize_features:
        f = F.normalize(f, dim=1)
    h = knn_bandwidth(f, neighbors, chunk_size) if bandwidth is None else bandwidth
    _check_bandwidth(h)
    log_p = _log_density(f, h, chunk_size).double()
    log_w = -power * (log_p - log_p.mean())
    return _normalized(_cap_log_weights(log_w - log_w.max(), max_weight))


def label_weights(labels: Tensor, class_counts: Sequence[int], power: float = 1.0) -> Tensor:
    """Label-based (oracle) rwSAM weights [N] float32: ``w_i ~ n_{y_i}^-power``, mean 1 over ``labels``.

    The upper-bound ablation. The reference code uses ``1.2 ** y_i`` instead, which only means
    "rarer class, larger weight" when class ids are sorted by frequency (true for CIFAR-LT, not for
    ImageNet-LT); the training counts ``class_counts`` make the weight independent of id order.
    """
    if labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point():
        raise LongtailError(
            f"labels must be a non-empty 1-D integer tensor, got shape {tuple(labels.shape)} "
            f"and dtype {labels.dtype}: pass the class index of each example"
        )
    if not (math.isfinite(power) and power >= 0):
        raise LongtailError(f"weight power must be finite and >= 0, got {power}: set sam.power")
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64, device=labels.device)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= counts.numel():
        raise LongtailError(
            f"label {low if low < 0 else high} is outside the {counts.numel()} class counts: "
            "pass the training counts of every class"
        )
    used = counts[labels]
    if bool((used <= 0).any()):
        missing = int(labels[used <= 0][0])
        raise LongtailError(
            f"class {missing} has training count {int(counts[missing])} but appears in labels: "
            "pass the counts of the set the labels come from"
        )
    return _normalized(-power * used.log())


def _log_density(x: Tensor, bandwidth: float, chunk_size: int) -> Tensor:
    n = x.shape[0]
    out = torch.empty(n, dtype=x.dtype, device=x.device)
    for start, d2 in _squared_distance_chunks(x, chunk_size):
        logits = d2 / (-2.0 * bandwidth * bandwidth)
        rows = torch.arange(d2.shape[0], device=x.device)
        logits[rows, start + rows] = -math.inf  # leave one out
        out[start : start + d2.shape[0]] = torch.logsumexp(logits, dim=1)
    return out - math.log(n - 1)


def _knn_bandwidth(x: Tensor, k: int, chunk_size: int) -> float:
    kth = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start, d2 in _squared_distance_chunks(x, chunk_size):
        rows = torch.arange(d2.shape[0], device=x.device)
        d2[rows, start + rows] = math.inf  # a point is not its own neighbour
        kth[start : start + d2.shape[0]] = d2.topk(k, dim=1, largest=False).values[:, -1]
    ordered = kth.sqrt().sort().values
    n = ordered.numel()
    return float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2)  # the median, as numpy defines it


def _squared_distance_chunks(x: Tensor, chunk_size: int) -> Iterator[tuple[int, Tensor]]:
    """Yields (first row, [rows, N] squared distances clamped >= 0) for each chunk of rows."""
    if chunk_size < 1:
        raise LongtailError(f"chunk_size must be >= 1, got {chunk_size}")
    sq = (x * x).sum(dim=1)
    for start in range(0, x.shape[0], chunk_size):
        block = x[start : start + chunk_size]
        d2 = sq[start : start + chunk_size, None] + sq[None, :] - 2.0 * (block @ x.T)
        yield start, d2.clamp_min_(0.0)


def _cap_log_weights(log_w: Tensor, max_ratio: float) -> Tensor:
    """min(log_w, log t) for the largest t with ``t = max_ratio * mean(min(w, t))``.

    With the k largest weights capped, ``t (N - c k) = c * sum(rest)``; the right k is the first whose
    next weight lies below that t (``mean(min(w, t)) * c - t`` is concave in t, so the pieces to the
    right of the largest root all fail the test). Done in log space: tiny weights never underflow.
    """
    n = log_w.numel()
    desc = log_w.sort(descending=True).values
    log_rest = desc.flip(0).logcumsumexp(0).flip(0)  # log sum of desc[k:]
    k = torch.arange(n, dtype=log_w.dtype, device=log_w.device)
    room = n - max_ratio * k
    log_cap = math.log(max_ratio) + log_rest - room.clamp_min(1e-300).log()
    fits = (room > 0) & (desc <= log_cap + 1e-12 * log_cap.abs().clamp_min(1.0))
    first = int(fits.nonzero()[0, 0])  # exists: c >= 1 makes k = n - 1 (or an earlier k) fit
    return log_w.clamp_max(float(log_cap[first]))


def _normalized(log_w: Tensor) -> Tensor:
    """exp(log_w) scaled to mean 1, as float32."""
    return (log_w - (torch.logsumexp(log_w, dim=0) - math.log(log_w.numel()))).exp().float()


def _as_points(features: Tensor, what: str) -> Tensor:
    if features.ndim != 2 or features.shape[0] < 2:
        raise LongtailError(
            f"{what} needs features of shape [N >= 2, D], got {tuple(features.shape)}: "
            "pass at least two feature vectors"
        )
    if not bool(torch.isfinite(features).all()):
        raise LongtailError(f"{what} got non-finite features: check the model for NaN/inf outputs")
    return features.detach()


def _check_bandwidth(bandwidth: float) -> None:
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise LongtailError(
            f"kde bandwidth must be > 0, got {bandwidth}: set sam.bandwidth or null"
        )


def _work_dtype(x: Tensor) -> torch.dtype:
    # float64 where it is cheap (CPU); accelerators (and MPS, which lacks float64) use float32
    return torch.float64 if x.device.type == "cpu" else torch.float32

"""Brute-force references for the classification losses, written from the papers' equations.

Plain Python loops over samples and classes with math.exp / math.log on float64 values; tensors are
only turned into lists, so nothing is shared with the implementations under test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

Rows = list[list[float]]


def rows(t: Tensor) -> Rows:
    """A [N, C] tensor as float64 Python lists."""
    return [[float(x) for x in row] for row in t.double().tolist()]


def log_softmax_at(z: Sequence[float], y: int) -> float:
    """log( e^{z_y} / sum_c e^{z_c} ), shifted by the max so large logits do not overflow."""
    top = max(z)
    return z[y] - top - math.log(sum(math.exp(v - top) for v in z))


def log_sigmoid(v: float) -> float:
    """log(1 / (1 + e^{-v})) without overflow for large |v|."""
    return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))


def reduce(losses: list[float], weights: list[float] | None) -> float:
    """Mean, or sum_i w_i L_i / sum_i w_i (F.cross_entropy's weighted mean)."""
    if weights is None:
        return sum(losses) / len(losses)
    return sum(w * v for w, v in zip(weights, losses, strict=True)) / sum(weights)


def ce_loop(z: Rows, y: list[int], weight: Sequence[float] | None = None) -> float:
    """Softmax cross-entropy, optionally with F.cross_entropy's per-class weight."""
    losses = [-log_softmax_at(zi, yi) for zi, yi in zip(z, y, strict=True)]
    return reduce(losses, None if weight is None else [weight[yi] for yi in y])


def focal_loop(z: Rows, y: list[int], gamma: float, weight: Sequence[float] | None = None) -> float:
    """Lin et al. 2017 eq. 4: -(1 - p_t)^gamma log p_t, p_t the softmax probability of y."""
    losses = []
    for zi, yi in zip(z, y, strict=True):
        log_p = log_softmax_at(zi, yi)
        losses.append(-((1.0 - math.exp(log_p)) ** gamma) * log_p)
    return reduce(losses, None if weight is None else [weight[yi] for yi in y])


def effective_number_weights(counts: Sequence[int], beta: float) -> list[float]:
    """Cui et al. 2019: (1 - beta) / (1 - beta^n), normalised to sum C; absent classes 0."""
    raw = [(1.0 - beta) / (1.0 - beta**n) if n > 0 else 0.0 for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def class_balanced_loop(
    z: Rows, y: list[int], counts: Sequence[int], beta: float, loss_type: str, gamma: float
) -> float:
    """(1/N) sum_i w_{y_i} L_i; L_i softmax CE, or the C one-vs-all (focal) binary terms."""
    w = effective_number_weights(counts, beta)
    total = 0.0
    for zi, yi in zip(z, y, strict=True):
        if loss_type == "softmax":
            loss = -log_softmax_at(zi, yi)
        else:
            loss = 0.0
            for c, v in enumerate(zi):
                p_true = math.exp(log_sigmoid(v if c == yi else -v))  # p_t of the binary outcome
                term = -math.log(p_true)
                if loss_type == "focal":
                    term *= (1.0 - p_true) ** gamma
                loss += term
        total += w[yi] * loss
    return total / len(z)


def ldam_margin_list(counts: Sequence[int], max_margin: float) -> list[float]:
    """Cao et al. 2019: Delta_c proportional to n_c^{-1/4}, the largest equal to max_margin."""
    raw = [n**-0.25 if n > 0 else 0.0 for n in counts]
    return [max_margin * r / max(raw) for r in raw]


def ldam_loop(
    z: Rows,
    y: list[int],
    counts: Sequence[int],
    max_margin: float,
    s: float,
    weight: Sequence[float] | None = None,
) -> float:
    """-log( e^{s(z_y - D_y)} / (e^{s(z_y - D_y)} + sum_{j != y} e^{s z_j}) ), weighted mean."""
    margins = ldam_margin_list(counts, max_margin)
    losses = []
    for zi, yi in zip(z, y, strict=True):
        shifted = [s * (v - margins[yi]) if c == yi else s * v for c, v in enumerate(zi)]
        losses.append(-log_softmax_at(shifted, yi))
    return reduce(losses, None if weight is None else [weight[yi] for yi in y])


def logit_adjusted_loop(z: Rows, y: list[int], counts: Sequence[int], tau: float) -> float:
    """Menon et al. 2021: CE on z_c + tau log(n_c / N)."""
    total = sum(counts)
    prior = [math.log(n / total) for n in counts]
    adjusted = [[v + tau * p for v, p in zip(zi, prior, strict=True)] for zi in z]
    return ce_loop(adjusted, y)


def balanced_softmax_loop(z: Rows, y: list[int], counts: Sequence[int]) -> float:
    """Ren et al. 2020: -log( n_y e^{z_y} / sum_c n_c e^{z_c} ), mean over the batch."""
    losses = []
    for zi, yi in zip(z, y, strict=True):
        denominator = sum(n * math.exp(v) for n, v in zip(counts, zi, strict=True))
        losses.append(-math.log(counts[yi] * math.exp(zi[yi]) / denominator))
    return sum(losses) / len(losses)

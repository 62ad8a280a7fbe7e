"""Brute-force references for the contrastive losses, written from the papers' formulas.

Plain Python loops over anchors and candidates with math.exp / math.log on float64 values; the
losses use no torch arithmetic (tensors are only turned into lists): nothing shared with the kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import Tensor

Rows = list[list[float]]


def rows(t: Tensor) -> Rows:
    """A [N, D] tensor as float64 Python lists."""
    return [[float(x) for x in row] for row in t.double().tolist()]


def unit(v: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / max(norm, 1e-12) for x in v]


def dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def l_out_loop(
    anchors: Rows,
    candidates: Rows,
    tau: float,
    is_self: Callable[[int, int], bool],
    is_positive: Callable[[int, int], bool],
    weights: Sequence[float] | None = None,
) -> float:
    """SupCon's L_out (Khosla et al. 2020, eq. 2), anchors without positives left out.

    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/tau) / sum_{a in A(i)} exp(z_i.z_a/tau) ),
    A(i) = every candidate that is not i itself; 0 when no anchor has a positive. With per-anchor
    ``weights`` (rwSAM): sum_i w_i L_i / #{anchors with a positive}.
    """
    z = [unit(a) for a in anchors]
    c = [unit(b) for b in candidates]
    total, counted = 0.0, 0
    for i, zi in enumerate(z):
        others = [j for j in range(len(c)) if not is_self(i, j)]
        positives = [j for j in others if is_positive(i, j)]
        if not positives:
            continue
        denominator = sum(math.exp(dot(zi, c[a]) / tau) for a in others)
        log_probs = [math.log(math.exp(dot(zi, c[p]) / tau) / denominator) for p in positives]
        total += (1.0 if weights is None else weights[i]) * -sum(log_probs) / len(positives)
        counted += 1
    return total / counted if counted else 0.0


def supcon_loop(
    features: Tensor,
    labels: Tensor,
    tau: float,
    ref_features: Tensor | None = None,
    ref_labels: Tensor | None = None,
    self_offset: int | None = None,
) -> float:
    """SupCon (or SimCLR/InfoNCE when ``labels`` are instance ids): P(i) = same label, not i."""
    y = labels.tolist()
    if ref_features is None or ref_labels is None:
        ref_features, ref_labels, self_offset = features, labels, 0
    ref_y = ref_labels.tolist()

    def is_self(i: int, j: int) -> bool:
        return self_offset is not None and j == self_offset + i

    return l_out_loop(
        rows(features), rows(ref_features), tau, is_self, lambda i, j: y[i] == ref_y[j]
    )


def kcl_loop(
    features: Tensor,
    positive_mask: Tensor,
    tau: float,
    ref_features: Tensor | None = None,
    self_offset: int | None = None,
) -> float:
    """KCL with its drawn positives given: P(i) = the mask's row, denominator every a != i."""
    mask = positive_mask.tolist()
    if ref_features is None:
        ref_features, self_offset = features, 0

    def is_self(i: int, j: int) -> bool:
        return self_offset is not None and j == self_offset + i

    return l_out_loop(rows(features), rows(ref_features), tau, is_self, lambda i, j: mask[i][j])


def mpsc_loop(
    features: Tensor,
    labels: Tensor,
    prototypes: Tensor,
    tau: float,
    exclude_positive: bool = True,
    weights: list[list[float]] | None = None,
) -> float:
    """MPSC as documented (PSC, Wang et al. 2021 eq. 4, when prototypes are [C, 1, D]).

    L_i = sum_m w_im * -log( exp(s_i,y,m) / sum_{(j, m') in D(i)} exp(s_i,j,m') ), with
    w_im = softmax_m(s_i,y,m) (or ``weights`` given, to freeze them), s = z.p / tau and D(i) the
    prototypes of the other classes (all prototypes when ``exclude_positive`` is False).
    """
    bank = [[unit(p) for p in per_class] for per_class in prototypes.double().tolist()]
    losses = []
    for i, (zi, y) in enumerate(zip(rows(features), labels.tolist(), strict=True)):
        zi = unit(zi)
        s = [[dot(zi, p) / tau for p in per_class] for per_class in bank]
        denominator = sum(
            math.exp(s[j][m])
            for j in range(len(bank))
            for m in range(len(bank[j]))
            if not (exclude_positive and j == y)
        )
        own = [math.exp(v) for v in s[y]]
        w = weights[i] if weights is not None else [e / sum(own) for e in own]
        losses.append(
            sum(-wm * math.log(math.exp(sm) / denominator) for wm, sm in zip(w, s[y], strict=True))
        )
    return sum(losses) / len(losses)


def mpsc_weights(features: Tensor, labels: Tensor, prototypes: Tensor, tau: float) -> Rows:
    """w_im = softmax_m(z_i . p_y,m / tau) [N][M], for freezing them in :func:`mpsc_loop`."""
    out = []
    for zi, y in zip(rows(features), labels.tolist(), strict=True):
        own = [math.exp(dot(unit(zi), unit(p)) / tau) for p in prototypes[y].double().tolist()]
        out.append([e / sum(own) for e in own])
    return out


def central_difference(fn: Callable[[Tensor], float], x: Tensor, h: float = 1e-6) -> list[float]:
    """d fn / d x by central differences, one entry at a time (x float64, flattened order)."""
    grads = []
    flat = x.detach().clone().reshape(-1)
    for k in range(flat.numel()):
        plus, minus = flat.clone(), flat.clone()
        plus[k] += h
        minus[k] -= h
        grads.append((fn(plus.view_as(x)) - fn(minus.view_as(x))) / (2 * h))
    return grads

"""Label-distribution-aware margin loss (Cao et al., NeurIPS 2019), with a DRW weight."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses.class_prior import (
    ClassCounts,
    as_class_counts,
    check_class_weight,
    check_logits,
    check_non_negative,
)


def ldam_margins(class_counts: ClassCounts, max_margin: float = 0.5) -> Tensor:
    """Delta_c = C / n_c^{1/4}, with C chosen so that max_c Delta_c = max_margin: float32 [C].

    An absent class (n_c = 0) gets margin 0 and is left out of the max: it never is a training
    label, and its infinite n_c^{-1/4} would otherwise zero every other margin.
    """
    counts = as_class_counts(class_counts)
    max_margin = check_non_negative("max_margin", max_margin)
    present = counts > 0
    margins = torch.zeros_like(counts)
    margins[present] = counts[present].pow(-0.25)
    return (margins * (max_margin / margins.max())).float()


class LDAMLoss(nn.Module):
    """L = -log( e^{s(z_y - Delta_y)} / (e^{s(z_y - Delta_y)} + sum_{j != y} e^{s z_j}) ).

    As LDAM-DRW's ``LDAMLoss`` (``kaidic/LDAM-DRW/losses.py``) it expects cosine logits z in
    [-1, 1] from a normalised classifier (``longtail.models.heads.NormedLinear``) and applies the
    scale ``s`` itself; with a plain linear head use s = 1. The batch reduction is
    ``F.cross_entropy``'s: the mean, or with a per-class weight w the weighted mean
    sum_i w_{y_i} L_i / sum_i w_{y_i} (an all-zero-weight batch gives 0).

    Deferred re-weighting (DRW, Cao et al. §3.3): call ``set_weight(drw_weights(...))`` at the DRW
    epoch; ``weight`` is always a buffer (ones stand for "no weight"), so checkpoints resume the
    weight in force. With max_margin = 0 and s = 1 this is plain (weighted) cross-entropy.

    Shapes: logits [N, C], labels [N] int64 -> scalar. Buffers: ``margins`` [C], ``weight`` [C].
    """

    margins: Tensor
    weight: Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        max_margin: float = 0.5,
        s: float = 30.0,
        weight: Tensor | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if not (math.isfinite(s) and s > 0):
            raise LongtailError(f"LDAM scale s={s} is invalid: use a positive value, e.g. s=30")
        self.s = float(s)
        self.max_margin = float(max_margin)
        margins = ldam_margins(class_counts, max_margin)
        self.register_buffer("margins", margins)
        self.register_buffer("weight", torch.ones_like(margins))
        self.set_weight(weight)

    def set_weight(self, weight: Tensor | Sequence[float] | None) -> None:
        """Switch the per-class CE weight in place (None = unweighted); keeps device and dtype."""
        w = check_class_weight(weight, self.margins.numel())
        with torch.no_grad():
            self.weight.copy_(torch.ones_like(self.weight) if w is None else w)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        x = check_logits(logits, labels, self.margins.numel())
        true_class = F.one_hot(labels, x.shape[1]).to(x.dtype)
        shifted = x - true_class * self.margins.to(x.dtype)[labels, None]
        loss = F.cross_entropy(self.s * shifted, labels, reduction="none")
        w = self.weight.to(x.dtype)[labels]
        return (w * loss).sum() / w.sum().clamp_min(torch.finfo(x.dtype).tiny)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, s={self.s}"

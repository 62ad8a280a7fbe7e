"""Softmax focal loss (Lin et al., ICCV 2017, eq. 4-5), as LDAM-DRW's multi-class baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.losses.class_prior import check_class_weight, check_logits, check_non_negative


def focal_modulator(log_p_true: Tensor, gamma: float) -> Tensor:
    """(1 - p_t)^gamma from log p_t [N], with a finite gradient even where p_t rounds to 1.

    ``-expm1(log p_t)`` keeps 1 - p_t accurate near p_t = 1; the clamp stops d/dx x^gamma = inf at
    x = 0 (gamma < 1) from turning into inf * 0 = NaN.
    """
    one_minus_p = (-torch.expm1(log_p_true)).clamp_min(torch.finfo(log_p_true.dtype).tiny)
    return one_minus_p.pow(gamma)


class FocalLoss(nn.Module):
    """FL(p_t) = -(1 - p_t)^gamma log p_t with p_t = softmax(logits)_y (Lin et al. 2017, eq. 4).

    Reduction: the mean over the batch, (1/N) sum_i FL_i, as LDAM-DRW's ``focal_loss``. With a
    per-class ``weight`` w it is the weighted mean sum_i w_{y_i} FL_i / sum_i w_{y_i}, so that
    gamma = 0 equals ``F.cross_entropy(logits, labels, weight=w)`` exactly. (LDAM-DRW's code instead
    computes p from the already-weighted CE, exp(-w_y CE) = p_t^{w_y}, and divides by N; the two
    agree when weight is None.) The Cui et al. sigmoid focal loss is ``ClassBalancedLoss("focal")``.

    Shapes: logits [N, C], labels [N] int64 -> scalar (float32 at least).
    """

    weight: Tensor | None

    def __init__(self, gamma: float = 1.0, weight: Tensor | Sequence[float] | None = None) -> None:
        super().__init__()
        self.gamma = check_non_negative("gamma", gamma)
        w = None if weight is None else check_class_weight(weight, len(weight))
        self.register_buffer("weight", w)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        num_classes = logits.shape[-1] if self.weight is None else self.weight.numel()
        x = check_logits(logits, labels, num_classes)
        log_p_true = F.log_softmax(x, dim=1).gather(1, labels[:, None]).squeeze(1)
        loss = -log_p_true
        if self.gamma > 0:
            loss = focal_modulator(log_p_true, self.gamma) * loss
        if self.weight is None:
            return loss.mean()
        w = self.weight.to(x.dtype)[labels]
        # an all-zero-weight batch gives 0, not 0/0
        return (w * loss).sum() / w.sum().clamp_min(torch.finfo(x.dtype).tiny)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"

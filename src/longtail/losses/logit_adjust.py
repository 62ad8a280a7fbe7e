"""Logit adjustment (Menon et al., ICLR 2021) and balanced softmax (Ren et al., NeurIPS 2020).

Both add a multiple of the log class prior to the logits before the softmax cross-entropy. Absent
classes (n_c = 0) use the finite floor ``ABSENT_LOG_PRIOR`` (-1e4) for log pi_c: they drop out of
the softmax (zero probability and gradient, up to exp(-1e4)) and the loss stays finite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.losses.class_prior import (
    ClassCounts,
    as_class_counts,
    check_logits,
    check_non_negative,
    log_class_prior,
)


class LogitAdjustedLoss(nn.Module):
    """L = -log( e^{z_y + tau log pi_y} / sum_c e^{z_c + tau log pi_c} ) (Menon et al. 2021).

    pi_c = n_c / sum_j n_j from the training counts; tau = 0 is plain cross-entropy, tau = 1 is
    the Fisher-consistent choice and equals :class:`BalancedSoftmaxLoss`. Predict with the raw
    logits (the adjustment is only in the loss). Batch reduction: the mean.

    Shapes: logits [N, C], labels [N] int64 -> scalar. Buffer: ``log_prior`` [C] float32.
    """

    log_prior: Tensor

    def __init__(self, class_counts: ClassCounts, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = check_non_negative("tau", tau)
        self.register_buffer("log_prior", log_class_prior(class_counts))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        x = check_logits(logits, labels, self.log_prior.numel())
        return F.cross_entropy(x + self.tau * self.log_prior.to(x.dtype), labels)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax: -log( n_y e^{z_y} / sum_c n_c e^{z_c} ) (Ren et al. 2020).

    Adding log n_c and adding log pi_c = log n_c - log N give the same softmax, so this is
    :class:`LogitAdjustedLoss` with tau = 1. Shapes: logits [N, C], labels [N] -> scalar.
    """

    def __init__(self, class_counts: ClassCounts) -> None:
        super().__init__(class_counts, tau=1.0)

    def extra_repr(self) -> str:
        return ""


def logit_adjust_posthoc(logits: Tensor, class_counts: ClassCounts, tau: float = 1.0) -> Tensor:
    """Post-hoc correction z_c - tau log pi_c (Menon et al. 2021) of a model's logits.

    Absent classes are excluded from prediction: their logit is lowered by tau * 1e4 (as the floor
    prior lowers it in training), rather than raised by tau * |log 0| = inf.

    Shapes: logits [N, C] -> [N, C] in float32 at least.
    """
    tau = check_non_negative("tau", tau)
    absent = as_class_counts(class_counts) == 0
    log_prior = log_class_prior(class_counts)
    x = check_logits(logits, None, log_prior.numel())
    # absent: log_prior is -1e4, so subtracting -log_prior lowers the logit by tau * 1e4
    shift = torch.where(absent, -log_prior, log_prior)
    return x - tau * shift.to(x.device, x.dtype)

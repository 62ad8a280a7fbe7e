"""Checks and class-prior quantities shared by the classification losses.

Class-frequency losses (class-balanced, LDAM, logit adjustment, balanced softmax) take the training
counts n_c [C] at construction. A class with n_c = 0 ("absent") is legal and never yields inf/NaN:
its log prior is the finite floor :data:`ABSENT_LOG_PRIOR` instead of log 0 = -inf, which takes it
out of every softmax (exp(-1e4) underflows to 0) yet keeps the loss finite even if such a label
turns up, e.g. a validation loss over classes the training subset lacks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from longtail.errors import LongtailError

# log pi_c used for absent classes: far below any real log prior (log 1e-9 = -20.7) but finite.
ABSENT_LOG_PRIOR = -1.0e4

ClassCounts = Sequence[int] | Tensor


def as_class_counts(class_counts: ClassCounts) -> Tensor:
    """Validated counts as a float64 CPU tensor [C]: 1-D, finite, >= 0, at least one > 0."""
    counts = torch.as_tensor(
        class_counts.tolist() if isinstance(class_counts, Tensor) else list(class_counts),
        dtype=torch.float64,
    )
    if (
        counts.ndim != 1
        or counts.numel() == 0
        or not bool(torch.isfinite(counts).all())
        or bool((counts < 0).any())
        or not bool((counts > 0).any())
    ):
        raise LongtailError(
            f"class_counts {counts.tolist()} are invalid: pass one non-negative training count "
            "per class, at least one of them positive"
        )
    return counts


def log_class_prior(class_counts: ClassCounts) -> Tensor:
    """log pi_c = log(n_c / sum_j n_j) as float32 [C]; absent classes get ABSENT_LOG_PRIOR."""
    counts = as_class_counts(class_counts)
    present = counts > 0
    log_prior = torch.full_like(counts, ABSENT_LOG_PRIOR)
    log_prior[present] = torch.log(counts[present] / counts.sum())
    return log_prior.float()


def check_class_weight(weight: Tensor | Sequence[float] | None, num_classes: int) -> Tensor | None:
    """A per-class weight as float32 [C] (None stays None); rejects wrong length or negatives."""
    if weight is None:
        return None
    w = torch.as_tensor(
        weight.tolist() if isinstance(weight, Tensor) else list(weight), dtype=torch.float32
    )
    if w.shape != (num_classes,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise LongtailError(
            f"class weight {w.tolist()} is invalid: pass {num_classes} finite non-negative values, "
            "one per class, or None"
        )
    return w


def check_non_negative(name: str, value: float) -> float:
    """``value`` as a float when finite and >= 0, else a one-line LongtailError."""
    if not (math.isfinite(value) and value >= 0):
        raise LongtailError(f"{name}={value} is invalid: use a finite value >= 0")
    return float(value)


def check_beta(beta: float) -> float:
    """The effective-number beta of Cui et al. 2019 must lie in [0, 1)."""
    if not 0.0 <= beta < 1.0:
        raise LongtailError(
            f"beta={beta} is outside [0, 1): use e.g. beta=0.9999 (0 = no reweighting)"
        )
    return float(beta)


def check_logits(logits: Tensor, labels: Tensor | None, num_classes: int) -> Tensor:
    """Shape checks (no host sync); returns logits in float32 at least (fp16/bf16 are upcast)."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise LongtailError(
            f"logits of shape {tuple(logits.shape)} do not match the {num_classes} class counts: "
            "pass [N, C] logits with C = len(class_counts)"
        )
    if labels is not None and labels.shape != (logits.shape[0],):
        raise LongtailError(
            f"labels of shape {tuple(labels.shape)} do not match logits {tuple(logits.shape)}: "
            "pass one class id per row"
        )
    return logits.to(torch.promote_types(logits.dtype, torch.float32))

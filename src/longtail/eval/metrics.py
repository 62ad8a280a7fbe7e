"""Confusion matrix, per-class accuracy and top-1 accuracy.

Everything here stays on the tensors' device and never reads a value back to the host, so it can run
inside a GPU evaluation loop without stalling it; only :func:`top1` returns a Python float.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longtail.errors import LongtailError


def _check_pair(preds: Tensor, targets: Tensor, num_classes: int) -> None:
    """Shape, dtype and device checks (metadata only: no host sync)."""
    if num_classes < 1:
        raise LongtailError(f"num_classes is {num_classes}: pass the dataset's class count (>= 1)")
    if preds.ndim != 1 or targets.ndim != 1 or preds.shape != targets.shape:
        raise LongtailError(
            f"preds {tuple(preds.shape)} and targets {tuple(targets.shape)} must be 1-D of equal "
            "length: pass predicted class ids [N] (argmax of the logits) and labels [N]"
        )
    for name, t in (("preds", preds), ("targets", targets)):
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise LongtailError(f"{name} has dtype {t.dtype}: pass integer class ids (int64)")
    if preds.device != targets.device:
        raise LongtailError(
            f"preds are on {preds.device} but targets on {targets.device}: move both to one device"
        )


def confusion_matrix(preds: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Count (target, prediction) pairs: ``cm[t, p]`` = number of samples of class t predicted as p.

    Args:
        preds: predicted class ids, integer ``[N]``.
        targets: true class ids, integer ``[N]``, same device as ``preds``.
        num_classes: C, given explicitly (never inferred from the labels, which may miss classes).

    Returns:
        int64 ``[C, C]`` on the inputs' device; rows are targets, columns predictions.

    A pair with either id outside ``[0, C)`` is counted in no cell, so ``cm.sum() < N`` reveals it.
    Checking the values here would need a host sync (and ``torch.bincount`` on CUDA syncs to size
    its output), so the count goes through ``scatter_add_`` into C*C bins plus one overflow bin;
    :func:`longtail.eval.predict.evaluate` compares the total with N and raises.
    """
    _check_pair(preds, targets, num_classes)
    preds = preds.long()
    targets = targets.long()
    valid = (preds >= 0) & (preds < num_classes) & (targets >= 0) & (targets < num_classes)
    overflow = num_classes * num_classes
    flat = torch.where(valid, targets * num_classes + preds, overflow)
    counts = torch.zeros(overflow + 1, dtype=torch.int64, device=preds.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat))
    return counts[:overflow].view(num_classes, num_classes)


def _check_cm(cm: Tensor) -> None:
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise LongtailError(
            f"confusion matrix has shape {tuple(cm.shape)}: expected square [C, C] "
            "(build it with longtail.eval.confusion_matrix)"
        )


def per_class_accuracy(cm: Tensor) -> Tensor:
    """Recall of each class: ``acc[c] = cm[c, c] / sum_p cm[c, p]``.

    Args:
        cm: confusion matrix ``[C, C]``, rows = targets.

    Returns:
        float64 ``[C]`` in [0, 1] on ``cm``'s device; NaN for a class with no evaluation samples
        (torchmetrics reports 0 there; an absent class has no accuracy, so we keep it out of means).
    """
    _check_cm(cm)
    cm = cm.to(torch.float64)
    return torch.diagonal(cm) / cm.sum(dim=1)  # 0/0 = NaN is exactly the absent-class marker


def top1(cm: Tensor) -> float:
    """Sample-weighted top-1 accuracy in [0, 1]: ``trace(cm) / sum(cm)``.

    Raises:
        LongtailError: the matrix counts no samples.
    """
    _check_cm(cm)
    correct, total = torch.stack([torch.trace(cm), cm.sum()]).to(torch.float64).tolist()
    if total == 0:
        raise LongtailError(
            "confusion matrix counts 0 samples: the evaluation set is empty; check the test split"
        )
    return correct / total

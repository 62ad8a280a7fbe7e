"""Per-epoch switches of the re-balancing baselines: DRW weights, DRS mode, progressive balance.

Pure functions of the epoch counter the trainer already keeps (whatever its base, 0 or 1: the
switch happens when ``epoch == start_epoch``), so a resumed run recomputes the same value.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from longtail.errors import LongtailError
from longtail.losses.class_prior import ClassCounts, as_class_counts, check_beta
from longtail.losses.reweighting import class_balanced_weights


def _check_epochs(**epochs: int) -> None:
    for name, value in epochs.items():
        if value < 0:
            raise LongtailError(f"{name}={value} is negative: pass an epoch index >= 0")


def drw_weights(
    class_counts: ClassCounts, epoch: int, start_epoch: int, beta: float = 0.9999
) -> Tensor | None:
    """Deferred re-weighting (Cao et al. 2019, Alg. 1): None before ``start_epoch``, then the
    class-balanced weights (1 - beta) / (1 - beta^{n_c}) normalised to sum C, float32 [C] on CPU.

    LDAM-DRW's CIFAR recipe: start_epoch 160 of 200, beta 0.9999. Pass the result to
    ``LDAMLoss.set_weight`` (None restores the unweighted loss).
    """
    _check_epochs(epoch=epoch, start_epoch=start_epoch)
    counts = as_class_counts(class_counts)
    beta = check_beta(beta)
    if epoch < start_epoch:
        return None
    return class_balanced_weights(counts.tolist(), beta)


def drs_mode(epoch: int, start_epoch: int) -> Literal["random", "class_balanced"]:
    """Deferred re-sampling (Cao et al. 2019, §4): instance sampling ("random") before
    ``start_epoch``, class-balanced sampling from it on; feed to ``IndexSampler.set_mode``."""
    _check_epochs(epoch=epoch, start_epoch=start_epoch)
    return "random" if epoch < start_epoch else "class_balanced"


def progressive_fraction(epoch: int, total_epochs: int) -> float:
    """t / T of progressively-balanced sampling (Kang et al. 2020, eq. 2), clipped to [0, 1].

    Feed to ``IndexSampler.set_progress`` before each epoch: p^PB = (1 - t/T) p^IB + (t/T) p^CB.
    """
    _check_epochs(epoch=epoch)
    if total_epochs < 1:
        raise LongtailError(f"total_epochs={total_epochs} is invalid: use a positive epoch count")
    return min(epoch / total_epochs, 1.0)

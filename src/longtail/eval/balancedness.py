"""How evenly a frozen representation serves frequent and rare classes.

Kang et al. ("Exploring Balanced Feature Spaces for Representation Learning", ICLR 2021) measure
the balancedness of a representation from its per-class linear-probe accuracy, but their exact
formula did not survive, so these three numbers are OUR reading of it. Inputs: per-class probe
accuracy ``a_c`` (percent; NaN for classes absent from the probe's test set, which are left out
of all three) and the class counts in the PRE-TRAINING set ``n_c``.

* ``few_many_ratio``: mean a_c of the few classes / mean of the many classes (n_c < 20 vs
  n_c > 100, :func:`longtail.eval.groups.shot_groups`); for C <= 20 classes tail / head by frequency
  rank 30% / 40% / 30% (:func:`longtail.eval.groups.rank_groups`), per CONVENTIONS.md. 1 is
  perfectly balanced; ``None`` when either group has no class with a value or the denominator is 0.
* ``slope``: least-squares slope of a_c (percent) against log10(n_c), percentage points per
  tenfold more pre-training images; 0 is balanced; ``None`` when fewer than two distinct counts.
* ``cv``: coefficient of variation of a_c, population std / mean; 0 is balanced (0 also when
  every accuracy is 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from longtail.errors import LongtailError
from longtail.eval.groups import group_means, rank_groups, shot_groups


def _as_float64(values: Tensor | Sequence[float | None]) -> Tensor:
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64)
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)


def few_many_ratio(
    per_class_acc: Tensor,
    pretrain_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> float | None:
    """Few / many (C > 20) or tail / head (C <= 20) mean of ``per_class_acc`` ``[C]``."""
    ranks = rank_groups(pretrain_counts)
    if ranks is not None:
        low, high = "tail", "head"
        groups = ranks
    else:
        low, high = "few", "many"
        groups = shot_groups(pretrain_counts, many_threshold, few_threshold)
    means = group_means(per_class_acc, {low: groups[low], high: groups[high]})
    rare, frequent = means[low], means[high]
    if rare is None or frequent is None or frequent == 0:
        return None
    return rare / frequent


def slope(per_class_acc: Tensor, pretrain_counts: Sequence[int]) -> float | None:
    """Least-squares slope of ``per_class_acc`` ``[C]`` against ``log10(pretrain_counts)``."""
    acc = _as_float64(per_class_acc)
    counts = torch.tensor([float(n) for n in pretrain_counts], dtype=torch.float64)
    present = ~acc.isnan()
    if (counts[present] < 1).any():
        raise LongtailError(
            "a class has pre-training count 0: the slope against log10(count) needs counts >= 1"
        )
    x = counts[present].log10()
    y = acc[present]
    if x.numel() < 2 or bool((x == x[0]).all()):
        return None
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def coefficient_of_variation(per_class_acc: Tensor) -> float:
    """Population std / mean of the non-NaN entries of ``per_class_acc`` ``[C]``."""
    acc = _as_float64(per_class_acc)
    acc = acc[~acc.isnan()]
    if acc.numel() == 0:
        raise LongtailError("every per-class accuracy is NaN: the probe's test set has no labels")
    mean = float(acc.mean())
    std = float(acc.std(unbiased=False))
    return 0.0 if mean == 0 else std / mean


def balancedness(
    per_class_acc: Tensor | Sequence[float | None],
    pretrain_counts: Sequence[int],
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> dict[str, float | None]:
    """``{"few_many_ratio", "slope", "cv"}`` (see the module docstring for the definitions).

    Args:
        per_class_acc: ``[C]`` linear-probe accuracy in percent; NaN or ``None`` for absent classes.
        pretrain_counts: length C, images of each class in the representation's pre-training set.
        many_threshold, few_threshold: the many / few class groups (``eval.*_threshold``).
    """
    acc = _as_float64(per_class_acc)
    counts = [int(n) for n in pretrain_counts]
    if acc.ndim != 1 or acc.numel() != len(counts):
        raise LongtailError(
            f"per_class_acc has shape {tuple(acc.shape)} but there are {len(counts)} "
            "pre-training counts: pass one accuracy and one count per class"
        )
    return {
        "few_many_ratio": few_many_ratio(acc, counts, many_threshold, few_threshold),
        "slope": slope(acc, counts),
        "cv": coefficient_of_variation(acc),
    }

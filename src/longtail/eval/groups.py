"""Class groups by training frequency and the summary of an evaluation.

Two groupings (CONVENTIONS.md, "Class groups and balancedness"):

* many / medium / few by training count: ``n > many_threshold``,
  ``few_threshold <= n <= many_threshold``, ``n < few_threshold`` (100 and 20 by default, rule of
  Kang et al., "Decoupling Representation and Classifier", ICLR 2020; BalFeat's code puts exactly
  20 in "few", we put it in "medium");
* head / middle / tail by frequency rank, 30% / 40% / 30% of the classes, only for C <= 20, where
  the count thresholds leave groups empty (CIFAR-10-LT r=100 has no "few" class).

A group without classes, or whose classes are all absent from the evaluation set, is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from longtail.errors import LongtailError
from longtail.eval.metrics import per_class_accuracy, top1

SHOT_GROUPS = ("many", "medium", "few")
RANK_GROUPS = ("head", "middle", "tail")
MAX_CLASSES_FOR_RANK_GROUPS = 20


def _check_counts(train_counts: Sequence[int]) -> list[int]:
    counts = [int(n) for n in train_counts]
    if not counts:
        raise LongtailError("train_counts is empty: pass the number of training images per class")
    if any(n < 0 for n in counts):
        raise LongtailError(f"train_counts {counts} has a negative entry: counts must be >= 0")
    return counts


def shot_groups(
    train_counts: Sequence[int], many_threshold: int = 100, few_threshold: int = 20
) -> dict[str, list[int]]:
    """Class ids in each of many (n > many), medium (few <= n <= many) and few (n < few).

    Returns:
        ``{"many": [...], "medium": [...], "few": [...]}``, ids ascending; lists may be empty.
    """
    counts = _check_counts(train_counts)
    if few_threshold > many_threshold:
        raise LongtailError(
            f"few_threshold {few_threshold} > many_threshold {many_threshold}: "
            "set few_threshold <= many_threshold (defaults 20 and 100)"
        )
    groups: dict[str, list[int]] = {name: [] for name in SHOT_GROUPS}
    for c, n in enumerate(counts):
        name = "many" if n > many_threshold else "few" if n < few_threshold else "medium"
        groups[name].append(c)
    return groups


def rank_groups(train_counts: Sequence[int]) -> dict[str, list[int]] | None:
    """Head / middle / tail: the 30% most frequent classes, the next 40%, the 30% least frequent.

    Classes are ranked by a stable sort on descending count, so a tie goes to the lower class id.
    Head and tail each hold ``round(0.3 * C)`` classes, rounded half up in exact integer arithmetic
    (``(3C + 5) // 10``; Python's ``round`` takes 4.5 to even); the middle holds the rest:
    3 / 4 / 3 for C = 10.

    Returns:
        ``{"head": [...], "middle": [...], "tail": [...]}``, ids ascending; ``None`` if C > 20.
    """
    counts = _check_counts(train_counts)
    num_classes = len(counts)
    if num_classes > MAX_CLASSES_FOR_RANK_GROUPS:
        return None
    order = sorted(range(num_classes), key=lambda c: -counts[c])  # sorted() is stable
    k = (3 * num_classes + 5) // 10
    return {
        "head": sorted(order[:k]),
        "middle": sorted(order[k : num_classes - k]),
        "tail": sorted(order[num_classes - k :]),
    }


def group_means(per_class: Tensor, groups: dict[str, list[int]]) -> dict[str, float | None]:
    """Mean of ``per_class`` over each group's classes, skipping NaN (classes absent from the test).

    Args:
        per_class: ``[C]`` per-class accuracies, NaN for absent classes (the mean keeps the unit).
        groups: group name -> class ids.

    Returns:
        group name -> mean, or ``None`` when the group has no class with a value.
    """
    values = per_class.detach().cpu().tolist()
    means: dict[str, float | None] = {}
    for name, ids in groups.items():
        bad = [c for c in ids if not 0 <= c < len(values)]
        if bad:
            raise LongtailError(
                f"group {name!r} has class ids {bad} outside [0, {len(values)}): "
                "build groups from the same train_counts as the accuracies"
            )
        present = [values[c] for c in ids if not math.isnan(values[c])]
        means[name] = sum(present) / len(present) if present else None
    return means


def summarize(
    cm: Tensor,
    train_counts: Sequence[int],
    *,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> dict[str, Any]:
    """Everything a results record needs from one confusion matrix; accuracies in percent (0-100).

    Args:
        cm: confusion matrix ``[C, C]``, rows = targets (:func:`longtail.eval.confusion_matrix`).
        train_counts: training images per class, length C.

    Returns:
        A JSON-ready dict: ``top1`` (sample-weighted), ``mean_class_acc`` (mean over classes present
        in the evaluation set), ``per_class`` (list of C, ``None`` for absent classes), ``many``,
        ``medium``, ``few``, ``head``, ``middle``, ``tail`` (``None`` for an empty group; the rank
        groups are ``None`` for C > 20), ``num_classes``, ``train_counts`` and ``group_sizes``
        (classes per group, ``None`` for rank groups when C > 20).
    """
    num_classes = cm.shape[0] if cm.ndim == 2 else -1
    counts = _check_counts(train_counts)
    if len(counts) != num_classes:
        raise LongtailError(
            f"train_counts has {len(counts)} entries but the confusion matrix "
            f"{tuple(cm.shape)} has {num_classes} classes: pass one training count per class"
        )
    acc = per_class_accuracy(cm) * 100.0
    per_class = [None if math.isnan(a) else a for a in acc.cpu().tolist()]
    groups: dict[str, list[int]] = shot_groups(counts, many_threshold, few_threshold)
    ranks = rank_groups(counts)
    if ranks is not None:
        groups.update(ranks)
    means = group_means(acc, {"all": list(range(num_classes)), **groups})
    summary: dict[str, Any] = {
        "top1": top1(cm) * 100.0,
        "mean_class_acc": means["all"],
        "per_class": per_class,
    }
    for name in SHOT_GROUPS + RANK_GROUPS:
        summary[name] = means.get(name)
    summary["num_classes"] = num_classes
    summary["train_counts"] = counts
    summary["group_sizes"] = {
        name: len(groups[name]) if name in groups else None for name in SHOT_GROUPS + RANK_GROUPS
    }
    return summary

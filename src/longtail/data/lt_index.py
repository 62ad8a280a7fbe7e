"""Long-tailed subsets of a balanced set: per-class counts and the indices that realise them.

Counts follow LDAM-DRW (Cao et al., NeurIPS 2019, ``imbalance_cifar.py``): with imbalance ratio
r = n_max / n_min and ``imb_factor = 1 / r``,

- exp:  n_c = int(n_max * imb_factor ** (c / (C - 1.0))),  c = 0..C-1  (= floor(n_max r^(-c/(C-1))))
- step: the first C // 2 classes keep n_max, the other classes get int(n_max * imb_factor).

The default index rule is LDAM-DRW's subset, which most published CIFAR-LT numbers use: one
``np.random.RandomState(seed)``; for each class in label order, that class's indices in source
order are shuffled with it and the first n_c kept. "first" keeps the first n_c in source order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.errors import LongtailError
from longtail.io import atomic_write

PROFILES = ("exp", "step")
RULES = ("shuffle", "first", "none")


def _check(num_classes: int, ratio: float, profile: str) -> None:
    if profile not in PROFILES:
        raise LongtailError(
            f"imbalance profile must be one of {PROFILES} (got {profile!r}): fix data.profile"
        )
    if num_classes < 1:
        raise LongtailError(f"num_classes must be >= 1 (got {num_classes})")
    if not math.isfinite(ratio) or ratio < 1:
        raise LongtailError(
            f"imbalance ratio must be >= 1 (got {ratio}): "
            "set it to n_max / n_min, e.g. 100 (1 is balanced)"
        )


def profile_fractions(num_classes: int, ratio: float, profile: str = "exp") -> list[float]:
    """Each class's share of n_max before rounding, ``[C]`` floats, first = 1, last = 1 / ratio."""
    _check(num_classes, ratio, profile)
    imb_factor = 1.0 / ratio
    if num_classes == 1:
        return [1.0]
    if profile == "exp":
        return [imb_factor ** (c / (num_classes - 1.0)) for c in range(num_classes)]
    head = num_classes // 2
    return [1.0] * head + [imb_factor] * (num_classes - head)


def long_tail_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exp") -> list[int]:
    """Images per class of the long-tailed subset (class 0 the largest), LDAM-DRW's formula.

    Raises:
        LongtailError: ratio < 1 or not finite, unknown profile, or a class that would get 0 images.
    """
    if n_max < 1:
        raise LongtailError(
            f"n_max must be >= 1 (got {n_max}): it is the largest class's image count"
        )
    counts = [int(n_max * f) for f in profile_fractions(num_classes, ratio, profile)]
    for c, n in enumerate(counts):
        if n < 1:
            raise LongtailError(
                f"class {c} gets 0 images at n_max {n_max}, ratio {ratio}: "
                "lower the imbalance ratio "
                f"below {n_max}"
            )
    return counts


def counts_for_total(
    total: int,
    num_classes: int,
    ratio: float,
    profile: str = "exp",
    available: Sequence[int] | None = None,
) -> list[int]:
    """Counts with the profile's shape that sum exactly to ``total`` (equal-size comparisons).

    Each class gets ``total * f_c / sum(f)`` (f from ``profile_fractions``), floored, and the
    images left over go one each to the classes with the largest remainders (ties: lower class).

    Raises:
        LongtailError: a class gets 0 images, or more than ``available[c]``.
    """
    fractions = np.asarray(profile_fractions(num_classes, ratio, profile), dtype=np.float64)
    if total < 1:
        raise LongtailError(f"total must be >= 1 (got {total})")
    if available is not None and len(available) != num_classes:
        raise LongtailError(
            f"available has {len(available)} entries for {num_classes} classes: "
            "give one available count per class"
        )
    exact = total * fractions / fractions.sum()
    counts = np.floor(exact).astype(np.int64)
    leftover = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:leftover]] += 1
    for c, n in enumerate(counts.tolist()):
        if n < 1:
            raise LongtailError(
                f"class {c} gets 0 images for total {total} at ratio {ratio}: raise the total or "
                "lower the ratio"
            )
        if available is not None and n > available[c]:
            raise LongtailError(
                f"class {c} needs {n} images for total {total} at ratio {ratio} but has "
                f"{available[c]}: lower the total"
            )
    return [int(n) for n in counts]


def long_tail_indices(
    labels: np.ndarray, counts: Sequence[int], seed: int = 0, rule: str = "shuffle"
) -> np.ndarray:
    """Indices (int64, class by class) of the subset holding ``counts[c]`` images of class c.

    Args:
        labels: int ``[N]`` in source order.
        counts: wanted images per class, ``[C]``.
        seed: seeds the one ``RandomState`` shared by all classes ("shuffle" rule).
        rule: "shuffle" (LDAM-DRW's subset), "first" (first n_c in source order), or "none":
            every image, in source order, whatever ``counts`` says (a published long-tailed split
            taken as given).
    """
    if rule not in RULES:
        raise LongtailError(
            f"subset rule must be one of {RULES} (got {rule!r}): fix data.subset_rule"
        )
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise LongtailError(f"labels must be one-dimensional (got shape {labels.shape})")
    if len(labels) and int(labels.max()) >= len(counts):
        raise LongtailError(
            f"labels go up to {int(labels.max())} but counts has {len(counts)} entries: "
            "give one count per class"
        )
    if rule == "none":
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.RandomState(seed)
    chosen: list[np.ndarray] = []
    for c, n_c in enumerate(counts):
        idx = np.where(labels == c)[0]
        if n_c < 0 or n_c > len(idx):
            raise LongtailError(
                f"class {c} has {len(idx)} images but the subset asks for {n_c}: lower n_max or "
                "the counts"
            )
        if rule == "shuffle":
            rng.shuffle(idx)
        chosen.append(idx[:n_c])
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def make_long_tail(
    arrays: ImageArrays,
    ratio: float,
    *,
    profile: str = "exp",
    seed: int = 0,
    rule: str = "shuffle",
    n_max: int | None = None,
) -> tuple[ImageArrays, np.ndarray]:
    """The long-tailed subset of a (balanced) set and its indices into ``arrays``.

    ``n_max`` defaults to the largest class count of ``arrays``.
    """
    n_max = max(arrays.class_counts()) if n_max is None else n_max
    counts = long_tail_counts(n_max, arrays.num_classes, ratio, profile)
    indices = long_tail_indices(arrays.labels, counts, seed=seed, rule=rule)
    return arrays.subset(indices), indices


def save_indices(path: str | Path, indices: np.ndarray, meta: dict[str, Any]) -> None:
    """Write ``{"indices": [...], **meta}`` as JSON, atomically.

    ``meta`` by convention holds counts, ratio, profile, seed and rule.
    """
    record = {"indices": [int(i) for i in np.asarray(indices).ravel()], **meta}
    payload = json.dumps(record, sort_keys=False).encode()
    atomic_write(Path(path), lambda f: f.write(payload))


def load_indices(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a file written by ``save_indices``: (int64 indices, the rest of the record)."""
    path = Path(path)
    fix = "delete it and rebuild the subset"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LongtailError(f"index file {path} does not exist: build the subset first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LongtailError(f"index file {path} is not valid JSON ({error}): {fix}") from None
    if not isinstance(record, dict) or not isinstance(record.get("indices"), list):
        raise LongtailError(f"index file {path} has no 'indices' list: {fix}")
    values = record.pop("indices")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise LongtailError(f"index file {path}: indices must be non-negative integers: {fix}")
    return np.asarray(values, dtype=np.int64), record

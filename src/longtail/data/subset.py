"""The subset rule: from data.* and a training split's labels to the long-tailed subset it trains on.

A subset is a record (``lt_index.json``): the chosen indices into the training split, the class
counts, and how they were chosen. It comes from a saved index file (``data.index_file``: a resumed
or re-evaluated run, a second stage), from the split as published (``subset_rule=none``), or from
the LDAM-DRW counts and index rule of :mod:`longtail.data.lt_index`. The balanced validation split
of the images a subset left out, and the test images a quick run keeps, are chosen here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.config import DataConfig
from longtail.data.lt_index import (
    counts_for_total,
    load_indices,
    long_tail_counts,
    long_tail_indices,
)
from longtail.errors import LongtailError

SUBSET_FIELDS = ("imbalance_ratio", "profile", "n_max", "total", "subset_rule", "subset_seed")


def subset_fields(cfg: DataConfig) -> dict[str, Any]:
    """The config fields that decide which training images a subset holds."""
    return {name: getattr(cfg, name) for name in SUBSET_FIELDS}


def subset_counts(cfg: DataConfig, full_counts: list[int]) -> list[int]:
    """Per-class counts of the long-tailed subset the config asks for."""
    num_classes = len(full_counts)
    if cfg.total is not None:
        return counts_for_total(
            cfg.total, num_classes, cfg.imbalance_ratio, cfg.profile, available=full_counts
        )
    n_max = cfg.n_max if cfg.n_max is not None else max(full_counts)
    return long_tail_counts(n_max, num_classes, cfg.imbalance_ratio, cfg.profile)


def choose_indices(cfg: DataConfig, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """The LT subset as a record: indices, counts, and how they were chosen (lt_index.json)."""
    if cfg.index_file:
        indices, record = load_indices(Path(cfg.index_file))
        if indices.size == 0 or indices.min() < 0 or indices.max() >= len(labels):
            raise LongtailError(
                f"data.index_file {cfg.index_file} has indices outside the {len(labels)} training"
                " images: it was saved for another dataset; rebuild it or fix data.root"
            )
        saved = record.get("counts")
        found = np.bincount(labels[indices], minlength=num_classes).tolist()
        if saved is not None and list(saved) != found:
            raise LongtailError(
                f"data.index_file {cfg.index_file} was made on other data (class counts differ):"
                " point data.root at the data it was saved for"
            )
    elif cfg.subset_rule == "none":  # the split as published: every image, in source order
        indices = np.arange(len(labels), dtype=np.int64)
        record = {"dataset": cfg.dataset, "rule": "none", "list": cfg.train_list}
    else:
        full_counts = np.bincount(labels, minlength=num_classes).tolist()
        counts = subset_counts(cfg, full_counts)
        indices = long_tail_indices(labels, counts, seed=cfg.subset_seed, rule=cfg.subset_rule)
        record = {
            "dataset": cfg.dataset,
            "ratio": cfg.imbalance_ratio,
            "profile": cfg.profile,
            "seed": cfg.subset_seed,
            "rule": cfg.subset_rule,
        }
    counts = np.bincount(labels[indices], minlength=num_classes).tolist()
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        raise LongtailError(
            f"class {empty[0]} has zero training images after subsetting: lower"
            " data.imbalance_ratio or raise data.n_max / data.total"
        )
    record.update({"indices": indices.tolist(), "counts": counts, "total": int(len(indices))})
    return record


def spread_indices(size: int, limit: int) -> np.ndarray:
    """``min(limit, size)`` indices spread evenly over ``range(size)`` (every size/limit-th).

    A class-sorted split (an ImageFolder tree) keeps every class in proportion, which the first N
    images would not.
    """
    n = min(limit, size)
    return np.unique(np.floor(np.arange(n) * (size / n)).astype(np.int64))


def validation_indices(
    labels: np.ndarray, used: np.ndarray, num_classes: int, per_class: int, seed: int
) -> np.ndarray:
    """A balanced validation split of the training images NOT in the long-tailed subset.

    Every class gets the same count, ``min(per_class, fewest spare images of any class)``, drawn
    without replacement by a seeded RandomState; indices (into the full training split) are sorted
    per class, classes in order. Model choices (tau-norm's tau) are made here, never on the test set.
    """
    spare = np.ones(len(labels), dtype=bool)
    spare[used] = False
    pools = [np.flatnonzero(spare & (labels == c)) for c in range(num_classes)]
    n = min(per_class, *(len(p) for p in pools))
    if n == 0:
        empty = next(c for c, p in enumerate(pools) if len(p) == 0)
        raise LongtailError(
            f"class {empty} has no training images outside the long-tailed subset, so no balanced"
            " validation split exists: name a published one (data.dataset=split_list with"
            " data.val_list), or train stage 1 with data.n_max below the largest class size"
        )
    rng = np.random.RandomState(seed)
    return np.concatenate([np.sort(rng.choice(p, n, replace=False)) for p in pools])

"""How many images the end-of-run probes read: the recipe's sets, or sets sized to a short run.

A full probe extracts features of the whole balanced training split (50,000 CIFAR images) and of
the long-tailed subset: minutes on a CPU, which is nothing beside a 200-epoch run and everything
beside a 10-step trial. With ``probe.size=auto`` (the default) a *shortened* run
(:func:`longtail.protocol.shortened`) probes sets whose feature extraction costs at most
``SHARE`` of its training: one forward pass per probe image against about three (forward and
backward) per trained image, so at most ``3 * SHARE * images trained`` probe images, and never
fewer than ``MIN_PER_CLASS`` a class. A run at its recipe's full length always probes the recipe's
sets, and so does ``probe.size=full``.
"""

from __future__ import annotations

import numpy as np

SHARE = 0.1  # the probes' feature extraction: at most a tenth of the run's training
MIN_PER_CLASS = 10  # below this a linear probe and kNN say little


def probe_images(trained_images: int) -> int:
    """The most probe images a shortened run that trained ``trained_images`` images reads."""
    return int(3 * SHARE * trained_images)


def per_class_cap(budget: int | None, num_classes: int, configured: int | None) -> int | None:
    """A balanced set's cap per class: the configured one (None = all), lowered to the budget."""
    if budget is None:
        return configured
    cap = max(MIN_PER_CLASS, budget // max(num_classes, 1))
    return cap if configured is None else min(cap, configured)


def long_tailed_subset(labels: np.ndarray, num_classes: int, budget: int | None) -> np.ndarray:
    """Indices of the long-tailed set kept for its probe: all, or the same fraction of every class.

    labels [N] int -> sorted int64 indices. Each class keeps ``max(1, floor(n_c * f))`` of its images
    (its first ones in set order) with ``f = budget / N``, so the set stays long-tailed.
    """
    n = len(labels)
    if budget is None or budget >= n:
        return np.arange(n, dtype=np.int64)
    fraction = budget / n
    kept = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool):
            kept.append(pool[: max(1, int(len(pool) * fraction))])
    return np.sort(np.concatenate(kept)).astype(np.int64)

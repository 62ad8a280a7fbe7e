"""data.test_limit keeps test images spread over the split, so class-sorted splits keep every class."""

from __future__ import annotations

import numpy as np

from longtail.data.subset import spread_indices


def test_spread_keeps_every_class_of_a_sorted_split() -> None:
    labels = np.repeat(np.arange(10), 1000)  # an ImageFolder tree: class-sorted
    kept = spread_indices(len(labels), 2000)
    assert len(kept) == 2000 and len(np.unique(kept)) == 2000
    assert np.bincount(labels[kept], minlength=10).tolist() == [200] * 10


def test_spread_is_everything_when_the_limit_exceeds_the_split() -> None:
    assert spread_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    assert spread_indices(7, 7).tolist() == list(range(7))
    assert spread_indices(9, 1).tolist() == [0]

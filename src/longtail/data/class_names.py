"""One label set across splits: a split's labels matched to the training split's classes by name.

ImageFolder trees (and any reader naming its classes) number classes by their sorted folder names
within each split, so a test tree missing a class, or holding another, would shift every later
label if splits were matched by position (a test folder ``z`` scored as the training class ``c``).
Here each split's class ``i`` is looked up by its name in the training classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from longtail.errors import LongtailError


def align_labels(
    labels: np.ndarray, classes: Sequence[str], train_classes: Sequence[str], split: str
) -> np.ndarray:
    """``labels`` (indices into ``classes``) as indices into ``train_classes``.

    Shapes: int64 ``[N] -> [N]``. A split may lack training classes (they are simply absent from
    it); a class the training split lacks is an error naming it.
    """
    if list(classes) == list(train_classes):
        return labels
    index = {name: i for i, name in enumerate(train_classes)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise LongtailError(
            f"the {split} split has a class {unknown[0]!r}{more} that the training split lacks:"
            f" rename or remove that {split} folder (classes are matched by name)"
        )
    mapping = np.asarray([index[c] for c in classes], dtype=np.int64)
    return mapping[np.asarray(labels, dtype=np.int64)]

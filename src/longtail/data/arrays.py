"""A decoded image set held in memory: the one currency every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageArrays:
    """A decoded image set held in memory.

    Attributes:
        images: uint8 ``[N, H, W, C]``, C = 1 for grayscale and 3 for RGB, C-contiguous.
        labels: int64 ``[N]``, values in ``[0, num_classes)``.
        classes: class names, ``classes[label]`` names a label.
        coarse_labels: int64 ``[N]`` super-class labels (CIFAR-100's 20 coarse classes) or None.
        coarse_classes: names of the coarse labels, or None.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    coarse_labels: np.ndarray | None = None
    coarse_classes: list[str] | None = None

    def __post_init__(self) -> None:
        # Readers build these; a mismatch here is a bug in a reader, not a user problem.
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}"
            )
        self.images = np.ascontiguousarray(self.images)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} != ({len(self.images)},)")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"labels outside [0, {len(self.classes)})")
        if self.coarse_labels is not None:
            self.coarse_labels = np.asarray(self.coarse_labels, dtype=np.int64)
            if self.coarse_labels.shape != self.labels.shape:
                raise ValueError("coarse_labels must have one entry per image")

    @property
    def num_classes(self) -> int:
        """Number of classes C (from the class names, so classes with no images still count)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageArrays:
        """The images at ``indices`` (int ``[M]``), in that order; class names are kept whole."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageArrays(
            images=self.images[idx],
            labels=self.labels[idx],
            classes=list(self.classes),
            coarse_labels=None if self.coarse_labels is None else self.coarse_labels[idx],
            coarse_classes=None if self.coarse_classes is None else list(self.coarse_classes),
        )

    def class_counts(self) -> list[int]:
        """Images per class, length ``num_classes``, zeros included."""
        return [int(n) for n in np.bincount(self.labels, minlength=self.num_classes)]

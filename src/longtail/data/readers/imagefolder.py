"""ImageFolder trees: ``root/<split>/<class>/*.{jpg,jpeg,png,bmp}`` (torchvision's layout).

Source order, which the long-tailed subset rules index into, is: classes in sorted folder-name
order, and within a class the files sorted by name.

A flat tree ``root/<class>/*`` (one's own photos, with no train/test level) is split here: each
class holds out ``HOLDOUT`` of its images (at least one when it has two or more; a seeded draw,
the same on every machine) as the ``test`` split, and ``train`` is the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.data.readers._decode import IMAGE_SUFFIXES, decode_files
from longtail.errors import LongtailError

_VARIABLE_SIZE_HINT = (
    "resize them to one size, or list them in a split-list file (`path label` lines) and load "
    "them with dataset split_list, which resizes and centre-crops"
)


HOLDOUT = 0.2  # a flat tree's held-out test share, per class
HOLDOUT_SEED = 0


@dataclass
class FolderListing:
    """The files of one split of an ImageFolder tree, in source order.

    Attributes:
        paths: image files, class by class, sorted by name within a class.
        labels: int64 ``[N]``, the class index of each path.
        classes: sorted class folder names.
    """

    paths: list[Path]
    labels: np.ndarray
    classes: list[str]


def list_image_folder(root: str | Path, split: str) -> FolderListing:
    """List ``root/split/<class>/*`` without decoding anything (cheap: one scandir per class).

    Raises:
        LongtailError: the split folder is missing, holds no class folders, or a class is empty.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir() and split in ("train", "test") and is_flat_tree(root):
        return _held_out(_list_classes(Path(root)), split)
    if not split_dir.is_dir():
        found = (
            sorted(p.name for p in Path(root).iterdir() if p.is_dir())
            if Path(root).is_dir()
            else []
        )
        raise LongtailError(
            f"ImageFolder split {split_dir} does not exist (sub-folders found: {found or 'none'}): "
            f"point data.root at the folder holding {split}/<class>/<image> trees (or at a"
            " flat <class>/<image> tree, which holds out a test split)"
        )
    return _list_classes(split_dir)


def is_flat_tree(root: str | Path) -> bool:
    """``root/<class>/<image>`` with no train/ or test/ level: class folders holding images."""
    root = Path(root)
    if not root.is_dir() or (root / "train").is_dir() or (root / "test").is_dir():
        return False
    for entry in os.scandir(root):
        if entry.is_dir() and not entry.name.startswith("."):
            return any(
                e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) for e in os.scandir(entry)
            )
    return False


def _held_out(listing: FolderListing, split: str) -> FolderListing:
    """A flat tree's ``test`` (``HOLDOUT`` of each class, seeded) or ``train`` (the rest)."""
    rng = np.random.RandomState(HOLDOUT_SEED)
    keep = []
    for c in range(len(listing.classes)):
        pool = np.flatnonzero(listing.labels == c)
        n_test = int(np.ceil(HOLDOUT * len(pool))) if len(pool) >= 2 else 0
        test = np.sort(rng.permutation(pool)[:n_test])
        keep.append(test if split == "test" else np.setdiff1d(pool, test))
    rows = np.concatenate(keep)
    return FolderListing([listing.paths[i] for i in rows], listing.labels[rows], listing.classes)


def _list_classes(split_dir: Path) -> FolderListing:
    """Every ``split_dir/<class>/<image>``, in source order."""
    # Hidden folders (.ipynb_checkpoints, .DS_Store dirs) are never classes.
    classes = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    if not classes:
        raise LongtailError(
            f"ImageFolder split {split_dir} has no class sub-folders: lay images out as "
            f"{split_dir}/<class>/<image>.jpg"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        files = sorted(
            e.name
            for e in os.scandir(class_dir)
            if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise LongtailError(
                f"class folder {class_dir} holds no .jpg/.jpeg/.png/.bmp images: add images "
                "or delete the folder"
            )
        paths.extend(class_dir / f for f in files)
        labels.extend([label] * len(files))
    return FolderListing(paths=paths, labels=np.asarray(labels, dtype=np.int64), classes=classes)


def read_image_folder(
    root: str | Path, split: str, channels: int = 3, *, workers: int = 1
) -> ImageArrays:
    """Decode one split of an ImageFolder tree into memory.

    Args:
        root: folder holding ``<split>/<class>/<image>`` trees.
        split: sub-folder name, e.g. "train" or "test".
        channels: 3 decodes as RGB, 1 as grayscale ("L", ITU-R 601-2 luma).
        workers: decoding threads (1 is fastest for small images; see ``readers._decode``).

    Returns:
        ImageArrays with images uint8 ``[N, H, W, channels]`` in source order.

    Raises:
        LongtailError: layout problems (see ``list_image_folder``), a corrupt image, or images of
        different sizes.
    """
    listing = list_image_folder(root, split)
    images = decode_files(listing.paths, channels, workers=workers, size_hint=_VARIABLE_SIZE_HINT)
    return ImageArrays(images=images, labels=listing.labels, classes=listing.classes)

"""CIFAR-10 / CIFAR-100 in the canonical python-pickle layout (Krizhevsky, 2009).

CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1..5``, ``test_batch`` and ``batches.meta``
(``label_names``); labels under ``labels``. CIFAR-100: ``cifar-100-python/`` with ``train``,
``test`` and ``meta`` (``fine_label_names``, ``coarse_label_names``); labels under ``fine_labels``
and ``coarse_labels``. Each row of ``data`` is 3072 uint8: 1024 red, 1024 green, 1024 blue, each a
row-major 32x32 plane. Record order is the source order for long-tailed subsets.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.errors import LongtailError

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
_SPLITS = ("train", "test")


def find_cifar_dir(root: str | Path, num_classes: int | None = None) -> tuple[Path, int]:
    """Locate the pickle folder under ``root`` (the folder itself or its parent).

    Returns:
        (folder, 10 or 100).

    Raises:
        LongtailError: no CIFAR pickle folder of the wanted kind is there.
    """
    root = Path(root)
    wanted = (10, 100) if num_classes is None else (num_classes,)
    for n in wanted:
        name, marker = (CIFAR10_DIR, "batches.meta") if n == 10 else (CIFAR100_DIR, "meta")
        for folder in (root, root / name):
            if (folder / marker).is_file() or (n == 10 and (folder / "data_batch_1").is_file()):
                return folder, n
    names = " or ".join(
        (CIFAR10_DIR, CIFAR100_DIR)[i] for i, n in enumerate((10, 100)) if n in wanted
    )
    raise LongtailError(
        f"no CIFAR pickles found in {root}: point data.root at the folder holding {names} "
        "(or at that folder itself)"
    )


def _load_pickle(path: Path, folder_name: str) -> dict[str, Any]:
    """Load a Python-2 style CIFAR pickle; bytes keys become str keys."""
    if not path.is_file():
        raise LongtailError(
            f"CIFAR pickle {path} is missing: point data.root at the folder holding {folder_name}"
        )
    try:
        with path.open("rb") as f:
            raw = pickle.load(f, encoding="bytes")
    except Exception as error:  # unpickling can raise almost anything on a damaged file
        raise LongtailError(
            f"CIFAR pickle {path} is corrupt ({type(error).__name__}): download {folder_name} again"
        ) from None
    if not isinstance(raw, dict):
        raise LongtailError(
            f"CIFAR pickle {path} does not hold a dict: download {folder_name} again"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in raw.items()}


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        raise LongtailError(
            f"CIFAR pickle {path} has no '{key}' entry (keys: {sorted(batch)}): "
            "is it the right file?"
        )
    return batch[key]


def _names(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _rows_to_nhwc(data: Any, path: Path) -> np.ndarray:
    """``[N, 3072]`` channel-planar rows → uint8 ``[N, 32, 32, 3]``."""
    array = np.asarray(data)
    if array.ndim != 2 or array.shape[1] != 3072:
        raise LongtailError(
            f"CIFAR pickle {path}: data has shape {array.shape}, expected [N, 3072]: "
            "download the python version of CIFAR again"
        )
    return np.ascontiguousarray(
        array.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    )


def _labels(values: Any, n_images: int, num_classes: int, path: Path, key: str) -> np.ndarray:
    labels = np.asarray(values, dtype=np.int64)
    if labels.shape != (n_images,) or (
        n_images and (labels.min() < 0 or labels.max() >= num_classes)
    ):
        raise LongtailError(
            f"CIFAR pickle {path}: '{key}' must hold {n_images} labels in [0, {num_classes}): "
            "download the dataset again"
        )
    return labels


def read_cifar(root: str | Path, split: str, *, num_classes: int | None = None) -> ImageArrays:
    """Read CIFAR-10 or CIFAR-100 (found automatically, or forced by ``num_classes``).

    Args:
        root: the pickle folder, or its parent.
        split: "train" or "test".
        num_classes: 10 or 100 to choose when the parent holds both; None takes what is there.

    Returns:
        ImageArrays, images uint8 ``[N, 32, 32, 3]`` in record order; for CIFAR-100 also the 20
        coarse labels and names.
    """
    if split not in _SPLITS:
        raise LongtailError(
            f"CIFAR split must be 'train' or 'test' (got {split!r}): fix data.split"
        )
    folder, n = find_cifar_dir(root, num_classes)
    if n == 10:
        meta_path = folder / "batches.meta"
        classes = _names(_field(_load_pickle(meta_path, CIFAR10_DIR), "label_names", meta_path))
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        images, labels = [], []
        for name in files:
            path = folder / name
            batch = _load_pickle(path, CIFAR10_DIR)
            rows = _rows_to_nhwc(_field(batch, "data", path), path)
            images.append(rows)
            labels.append(
                _labels(_field(batch, "labels", path), len(rows), len(classes), path, "labels")
            )
        return ImageArrays(np.concatenate(images), np.concatenate(labels), classes)

    meta_path = folder / "meta"
    meta = _load_pickle(meta_path, CIFAR100_DIR)
    classes = _names(_field(meta, "fine_label_names", meta_path))
    coarse_classes = _names(_field(meta, "coarse_label_names", meta_path))
    path = folder / split
    batch = _load_pickle(path, CIFAR100_DIR)
    rows = _rows_to_nhwc(_field(batch, "data", path), path)
    fine = _labels(_field(batch, "fine_labels", path), len(rows), len(classes), path, "fine_labels")
    coarse = _labels(
        _field(batch, "coarse_labels", path), len(rows), len(coarse_classes), path, "coarse_labels"
    )
    return ImageArrays(rows, fine, classes, coarse_labels=coarse, coarse_classes=coarse_classes)

"""IDX files (LeCun's MNIST format), used by MNIST and Fashion-MNIST, plain or gzipped.

Header: 2 zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of dimensions,
then one big-endian uint32 per dimension; the data follow in row-major order. Images are magic
0x00000803 (``[N, rows, cols]``), labels 0x00000801 (``[N]``).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.errors import LongtailError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
# Where each dataset's files may sit below data.root: the folder itself, Debian's package layout
# (dpkg -x of dataset-fashion-mnist), and torchvision's download layout.
_SEARCH = {
    "fashion_mnist": ("", "usr/share/datasets/fashion-mnist", "fashion-mnist", "FashionMNIST/raw"),
    "mnist": ("", "usr/share/datasets/mnist", "mnist", "MNIST/raw"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise LongtailError(f"idx file {path} is missing: fetch the dataset again") from None
    except (OSError, EOFError, zlib.error) as error:
        raise LongtailError(
            f"idx file {path} is not a readable gzip ({error}): download it again"
        ) from None


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Parse one IDX file whose header must carry ``magic``; returns uint8 with the header's dims.

    Raises:
        LongtailError: wrong magic, or a payload size that does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or int.from_bytes(raw[:4], "big") != magic:
        found = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "nothing"
        raise LongtailError(
            f"idx file {path} has magic {found}, expected 0x{magic:08x}: is it the right "
            "(images vs labels) file, and undamaged?"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LongtailError(f"idx file {path} is truncated inside its header: download it again")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise LongtailError(
            f"idx file {path} holds {len(raw) - header} data bytes but its header {dims} needs "
            f"{expected}: the file is truncated or damaged, download it again"
        )
    # A copy: frombuffer over bytes is read-only, and torch.from_numpy warns on read-only arrays.
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_pair(
    images_path: str | Path, labels_path: str | Path, classes: Sequence[str] | None = None
) -> ImageArrays:
    """Read an images/labels IDX pair into ImageArrays with images uint8 ``[N, rows, cols, 1]``.

    ``classes`` defaults to "0".."K-1" with K = largest label + 1.
    """
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise LongtailError(
            f"idx files disagree: {images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels: use files from one download"
        )
    names = (
        list(classes)
        if classes is not None
        else [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
    )
    if len(labels) and labels.max() >= len(names):
        raise LongtailError(
            f"idx file {labels_path} has label {labels.max()} but the dataset has {len(names)} "
            "classes: is it the right dataset?"
        )
    return ImageArrays(np.ascontiguousarray(images[..., None]), labels, names)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (plain first), else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_mnist_like(
    root: str | Path, split: str, *, dataset: str = "fashion_mnist"
) -> tuple[Path, Path]:
    """The (images, labels) idx files of ``split`` under ``root``; see ``read_mnist_like``."""
    if dataset not in _SEARCH:
        raise LongtailError(f"dataset must be one of {sorted(_SEARCH)} (got {dataset!r})")
    if split not in _SPLIT_PREFIX:
        raise LongtailError(
            f"{dataset} split must be 'train' or 'test' (got {split!r}): fix data.split"
        )
    prefix = _SPLIT_PREFIX[split]
    root = Path(root)
    for sub in _SEARCH[dataset]:
        folder = root / sub if sub else root
        images = find_idx_file(folder, f"{prefix}-images-idx3-ubyte")
        labels = find_idx_file(folder, f"{prefix}-labels-idx1-ubyte")
        if images is not None and labels is not None:
            return images, labels
    fix = (
        "run `python -m longtail.data.fetch fashion-mnist DIR`"
        if dataset == "fashion_mnist"
        else "download MNIST's four idx files into DIR"
    )
    raise LongtailError(
        f"no {prefix}-images-idx3-ubyte(.gz) + {prefix}-labels-idx1-ubyte(.gz) under {root}: "
        f"{fix} and point data.root at DIR"
    )


def read_mnist_like(root: str | Path, split: str, *, dataset: str = "fashion_mnist") -> ImageArrays:
    """Read MNIST or Fashion-MNIST (``train-images-idx3-ubyte(.gz)``, ``t10k-...``).

    Args:
        root: the folder with the idx files, or one holding ``usr/share/datasets/fashion-mnist``
            (Debian's package unpacked with ``dpkg -x``) or torchvision's ``FashionMNIST/raw``.
        split: "train" or "test".
        dataset: "fashion_mnist" or "mnist" (decides the class names and where to look).

    Returns:
        ImageArrays, images uint8 ``[N, 28, 28, 1]`` in file order.
    """
    images, labels = locate_mnist_like(root, split, dataset=dataset)
    names = FASHION_MNIST_CLASSES if dataset == "fashion_mnist" else MNIST_CLASSES
    return read_idx_pair(images, labels, names)

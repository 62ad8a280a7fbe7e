"""One entry point from (dataset name, root, split) to decoded ImageArrays, cached if asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.data.cache import cached
from longtail.data.readers.cifar import CIFAR10_DIR, CIFAR100_DIR, find_cifar_dir, read_cifar
from longtail.data.readers.idx import locate_mnist_like, read_mnist_like
from longtail.data.readers.imagefolder import is_flat_tree, list_image_folder, read_image_folder
from longtail.data.readers.split_list import decode_file_list, read_split_list
from longtail.errors import LongtailError

DATASETS = ("cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "split_list")
_NATIVE_CHANNELS = {"fashion_mnist": 1, "mnist": 1}


def convert_channels(arrays: ImageArrays, channels: int) -> ImageArrays:
    """Return ``arrays`` with ``channels`` channels: 1 → 3 repeats, 3 → 1 is Pillow's "L" luma.

    The 3 → 1 arithmetic is Pillow's own (``L = (19595 R + 38470 G + 7471 B + 2^15) >> 16``,
    ITU-R 601-2), so a pickle set converted here equals the same images decoded with mode "L".
    """
    have = arrays.images.shape[-1]
    if have == channels:
        return arrays
    if (have, channels) == (1, 3):
        images = np.repeat(arrays.images, 3, axis=-1)
    elif (have, channels) == (3, 1):
        rgb = arrays.images.astype(np.uint32)
        luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        images = luma.astype(np.uint8)[..., None]
    else:
        raise LongtailError(
            f"channels must be 1 or 3 (got {channels}): set data.channels to 1 or 3"
        )
    return ImageArrays(
        images, arrays.labels, arrays.classes, arrays.coarse_labels, arrays.coarse_classes
    )


def _is_image_folder(root: Path, split: str) -> bool:
    split_dir = root / split
    return split_dir.is_dir() and any(p.is_dir() for p in split_dir.iterdir())


def _folder_sources(root: Path, split: str) -> list[Path]:
    """What a tree's cache fingerprint watches: the split's folder, or a flat tree's root."""
    return [root / split] if (root / split).is_dir() or not is_flat_tree(root) else [root]


def _plan(
    dataset: str,
    root: Path,
    split: str,
    channels: int,
    list_file: Path | None,
    image_size: int | None,
    workers: int,
) -> tuple[str, Callable[[], ImageArrays], list[Path]]:
    """(reader name, build function, source files/folders for the cache fingerprint)."""
    if dataset in ("cifar10", "cifar100"):
        n = 10 if dataset == "cifar10" else 100
        try:
            folder, _ = find_cifar_dir(root, n)
        except LongtailError:
            if not _is_image_folder(root, split):
                name = CIFAR10_DIR if n == 10 else CIFAR100_DIR
                raise LongtailError(
                    f"data.root {root} holds neither {name} pickles nor an ImageFolder "
                    f"{split}/<class>/ tree: point data.root at one of them"
                ) from None
            return (
                "imagefolder",
                lambda: read_image_folder(root, split, channels, workers=workers),
                _folder_sources(root, split),
            )
        return "cifar_pickle", lambda: read_cifar(folder, split, num_classes=n), [folder]
    if dataset in ("fashion_mnist", "mnist"):
        files = list(locate_mnist_like(root, split, dataset=dataset))
        return "idx", lambda: read_mnist_like(root, split, dataset=dataset), files
    if dataset == "imagefolder":
        return (
            "imagefolder",
            lambda: read_image_folder(root, split, channels, workers=workers),
            _folder_sources(root, split),
        )
    if image_size is None:
        raise LongtailError(
            "dataset split_list needs an image size to resize and crop to: set data.image_size"
        )
    listed = read_split_list(split_list_file(root, split, list_file), root)
    size = image_size
    return (
        "split_list",
        lambda: decode_file_list(listed, size, channels, workers=workers),
        [split_list_file(root, split, list_file), *listed.paths],
    )


def split_list_file(root: Path, split: str, list_file: Path | None) -> Path:
    """The list of a split: ``list_file`` when named (data.<split>_list), else ``root/<split>.txt``."""
    return list_file if list_file is not None else root / f"{split}.txt"


def list_files(
    dataset: str,
    root: str | Path,
    split: str,
    list_file: str | Path | None = None,
    *,
    check_files: bool = True,
) -> tuple[list[Path], np.ndarray, list[str]] | None:
    """(image files, int64 labels [N] in source order, class names) of a split, read from its list
    or its file names without decoding an image; None for array sources (pickles, idx, packs),
    whose labels come with the decoded arrays at little cost.

    A split list (``list_file`` or ``root/<split>.txt``) has classes "0".."C-1", C = its largest
    label + 1; ``check_files=False`` reads the list alone (its images need not exist: counting a
    published split). ImageFolder trees (and the CIFAR-10 JPEG copy) list their files.
    """
    root = Path(root).expanduser()
    if dataset == "split_list":
        lst = Path(list_file).expanduser() if list_file is not None else None
        listed = read_split_list(split_list_file(root, split, lst), root, check_files=check_files)
        return listed.paths, listed.labels, [str(c) for c in range(listed.num_classes)]
    if dataset not in DATASETS:  # a pack: arrays
        return None
    if not root.exists():
        raise LongtailError(
            f"data.root {root} does not exist: point data.root at the {dataset} data folder"
        )
    reader, _, _ = _plan(dataset, root, split, 3, None, None, 1)
    if reader != "imagefolder":
        return None
    listing = list_image_folder(root, split)
    return listing.paths, listing.labels, listing.classes


def load_split(
    dataset: str,
    root: str | Path,
    split: str,
    *,
    cache_dir: Path | None = None,
    channels: int | None = None,
    list_file: str | Path | None = None,
    image_size: int | None = None,
    workers: int = 1,
) -> ImageArrays:
    """Decode one split of a dataset into memory, once per source state when ``cache_dir`` is set.

    Args:
        dataset: one of ``DATASETS``. "cifar10"/"cifar100" read the python pickles when ``root``
            holds them (or is their folder), else an ImageFolder ``train/``, ``test/`` tree there
            (e.g. the CIFAR-10 JPEG copy).
        root: data.root; for "split_list" the image root (lists: ``list_file``, or
            ``<root>/<split>.txt``).
        split: "train" / "test" (or the ImageFolder sub-folder / list name).
        cache_dir: where decoded ``.npz`` files are kept; None decodes every call.
        channels: 1 or 3; None keeps the dataset's own (1 for MNIST-likes, else 3).
        list_file: for "split_list", the split's list (data.train_list / val_list / test_list)
            instead of ``<root>/<split>.txt``.
        image_size: for "split_list", the square side images are resized and cropped to.
        workers: decoding threads for image files.
    """
    if dataset not in DATASETS:
        raise LongtailError(
            f"unknown dataset {dataset!r}: data.dataset must be one of {', '.join(DATASETS)}"
        )
    root = Path(root).expanduser()
    if not root.exists():
        raise LongtailError(
            f"data.root {root} does not exist: point data.root at the {dataset} data folder"
        )
    want = channels if channels is not None else _NATIVE_CHANNELS.get(dataset, 3)
    lst = Path(list_file) if list_file is not None else None
    reader, build, sources = _plan(dataset, root, split, want, lst, image_size, workers)

    def build_converted() -> ImageArrays:
        return convert_channels(build(), want)

    if cache_dir is None:
        return build_converted()
    key: dict[str, Any] = {
        "reader": reader,
        "dataset": dataset,
        "root": str(root.resolve()),
        "split": split,
        "channels": want,
        "image_size": image_size,
    }
    if lst is not None:  # a named list (absent from the key otherwise: older caches stay valid)
        key["list"] = str(lst.expanduser().resolve())
    return cached(key, build_converted, Path(cache_dir), sources=sources)


def dataset_stats(arrays: ImageArrays) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) std of the pixels, in [0, 1] units, ``([C], [C])``.

    From a 256-bin histogram per channel: the counting is exact integer work, so the float error
    is that of a 256-term sum whatever N is; chunking bounds the memory.
    """
    images = arrays.images
    channels = images.shape[-1]
    if images.size == 0:
        raise LongtailError("cannot compute statistics of an empty image set: check the split")
    histogram = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, len(images), 8192):
        chunk = images[start : start + 8192].reshape(-1, channels)
        for c in range(channels):
            histogram[c] += np.bincount(chunk[:, c], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = histogram.sum(axis=1).astype(np.float64)
    means = (histogram @ values) / n
    variances = (histogram @ values**2) / n - means**2
    return [float(m) for m in means], [float(v) for v in np.sqrt(np.maximum(variances, 0.0))]


def image_files(dataset: str, root: str | Path, split: str) -> list[Path] | None:
    """The image file of every record of a split, in record order, when the dataset reads files
    unchanged (ImageFolder trees, the CIFAR-10 JPEG copy); None for arrays (pickles, idx) and for
    split lists (those are resized on decoding)."""
    if dataset == "split_list":
        return None
    root = Path(root).expanduser()
    reader, _, _ = _plan(dataset, root, split, 3, None, None, 1)
    return list_image_folder(root, split).paths if reader == "imagefolder" else None

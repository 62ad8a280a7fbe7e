"""Write tiny datasets in the real on-disk formats, for tests in any area.

Every writer returns a ``WrittenDataset``: the root to hand to a reader and the arrays it must
read back (for JPEG those are the pixels before lossy encoding). Images are a class-specific mean
colour and grating plus seeded noise, so a model can learn them and a reader's label mix-ups show.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from longtail.data.arrays import ImageArrays

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


@dataclass
class WrittenDataset:
    """Where a fixture wrote a dataset and what each split holds, in source order."""

    root: Path
    splits: dict[str, ImageArrays] = field(default_factory=dict)


def class_images(
    labels: np.ndarray, size: int, channels: int, num_classes: int, seed: int
) -> np.ndarray:
    """uint8 ``[N, size, size, channels]``: per class a mean colour and a grating, plus noise.

    The mean colours are spread evenly over 30..225; the grating (amplitude 40) has a class-specific
    orientation (pi c / C) and frequency (2-4 cycles), which a convnet picks up in a few steps even
    after crops and flips; the noise (std 12) is seeded.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    spread = np.linspace(30, 225, max(num_classes, 2))
    if channels == 1:
        means = spread[:num_classes, None]
    else:  # three different orderings of the same spread keep colours distinct per channel
        means = np.stack(
            [spread[:num_classes], spread[::-1][:num_classes], np.roll(spread, 3)[:num_classes]], 1
        )
    theta = np.pi * labels / num_classes
    cycles = 2 + labels % 3
    y, x = np.mgrid[0:size, 0:size] / size
    phase = x[None] * np.cos(theta)[:, None, None] + y[None] * np.sin(theta)[:, None, None]
    grating = 40.0 * np.sin(2 * np.pi * cycles[:, None, None] * phase)
    noise = rng.normal(0.0, 12.0, size=(len(labels), size, size, channels))
    pixels = means[labels][:, None, None, :] + grating[..., None] + noise
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _per_class(n: int | Sequence[int], num_classes: int) -> list[int]:
    return [int(n)] * num_classes if isinstance(n, int) else [int(v) for v in n]


def shuffled_labels(n_per_class: int | Sequence[int], num_classes: int, seed: int) -> np.ndarray:
    """Labels with ``n_per_class`` of each class in a seeded random record order (as CIFAR's)."""
    counts = _per_class(n_per_class, num_classes)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    return labels[np.random.RandomState(seed).permutation(len(labels))]


def _dump(path: Path, obj: object) -> None:
    # Protocol 2 with bytes keys: what pickle.load(..., encoding="bytes") returns for the originals.
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 → ``[N, 3072]`` rows: the red plane, then green, then blue, each row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def write_cifar10_pickles(
    directory: Path, n_per_class: int = 10, n_test_per_class: int = 5, seed: int = 0
) -> WrittenDataset:
    """``directory/cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta."""
    folder = Path(directory) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    result = WrittenDataset(root=folder)
    for split, n in (("train", n_per_class), ("test", n_test_per_class)):
        labels = shuffled_labels(n, 10, seed + (split == "test"))
        images = class_images(labels, 32, 3, 10, seed + 10 + (split == "test"))
        result.splits[split] = ImageArrays(images, labels, list(CIFAR10_CLASSES))
        rows = _cifar_rows(images)
        names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
        for b, chunk in enumerate(np.array_split(np.arange(len(labels)), len(names))):
            batch = {
                b"batch_label": f"{split} batch {b + 1} of {len(names)}".encode(),
                b"labels": [int(v) for v in labels[chunk]],
                b"data": rows[chunk],
                b"filenames": [f"img_{i:05d}.png".encode() for i in chunk],
            }
            _dump(folder / names[b], batch)
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [n.encode() for n in CIFAR10_CLASSES],
        b"num_vis": 3072,
    }
    _dump(folder / "batches.meta", meta)
    return result


def write_cifar100_pickles(
    directory: Path, n_per_class: int = 2, n_test_per_class: int = 1, seed: int = 0
) -> WrittenDataset:
    """``directory/cifar-100-python``: train, test, meta; 100 fine classes, coarse = fine // 5."""
    folder = Path(directory) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine_{i:02d}" for i in range(100)]
    coarse_names = [f"coarse_{i:02d}" for i in range(20)]
    result = WrittenDataset(root=folder)
    for split, n in (("train", n_per_class), ("test", n_test_per_class)):
        labels = shuffled_labels(n, 100, seed + (split == "test"))
        images = class_images(labels, 32, 3, 100, seed + 10 + (split == "test"))
        coarse = labels // 5
        result.splits[split] = ImageArrays(
            images, labels, fine_names, coarse_labels=coarse, coarse_classes=coarse_names
        )
        batch = {
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
            b"batch_label": f"{split} batch 1 of 1".encode(),
            b"fine_labels": [int(v) for v in labels],
            b"coarse_labels": [int(v) for v in coarse],
            b"data": _cifar_rows(images),
        }
        _dump(folder / split, batch)
    meta = {
        b"fine_label_names": [n.encode() for n in fine_names],
        b"coarse_label_names": [n.encode() for n in coarse_names],
    }
    _dump(folder / "meta", meta)
    return result


def write_image_folder(
    directory: Path,
    classes: Sequence[str],
    n_per_class: int | Sequence[int],
    size: int = 32,
    ext: str = "png",
    *,
    n_test_per_class: int | Sequence[int] | None = None,
    channels: int = 3,
    seed: int = 0,
) -> WrittenDataset:
    """``directory/{train,test}/<class>/NNNN.<ext>`` (test only with ``n_test_per_class``)."""
    root = Path(directory)
    result = WrittenDataset(root=root)
    splits = [("train", n_per_class)]
    if n_test_per_class is not None:
        splits.append(("test", n_test_per_class))
    for s, (split, n) in enumerate(splits):
        counts = _per_class(n, len(classes))
        labels = np.repeat(np.arange(len(classes), dtype=np.int64), counts)
        images = class_images(labels, size, channels, len(classes), seed + s)
        result.splits[split] = ImageArrays(images, labels, list(classes))
        position = 0
        for c, name in enumerate(classes):
            class_dir = root / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(counts[c]):
                pixels = images[position]
                mode = "L" if channels == 1 else "RGB"
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(
                    class_dir / f"{i:04d}.{ext}"
                )
                position += 1
    return result


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: ``magic`` (its last byte must equal ``array.ndim``), big-endian dims, data."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(
    directory: Path,
    n_train_per_class: int | Sequence[int] = 20,
    n_test_per_class: int | Sequence[int] = 5,
    size: int = 28,
    gz: bool = True,
    seed: int = 0,
) -> WrittenDataset:
    """MNIST-style ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` for 10 classes."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    result = WrittenDataset(root=root)
    for split, prefix, n in (
        ("train", "train", n_train_per_class),
        ("test", "t10k", n_test_per_class),
    ):
        labels = shuffled_labels(n, 10, seed + (split == "test"))
        images = class_images(labels, size, 1, 10, seed + 10 + (split == "test"))
        result.splits[split] = ImageArrays(images, labels, [str(c) for c in range(10)])
        for kind, data, magic in (
            ("images-idx3", images[..., 0], 0x00000803),
            ("labels-idx1", labels.astype(np.uint8), 0x00000801),
        ):
            path = root / f"{prefix}-{kind}-ubyte{'.gz' if gz else ''}"
            payload = idx_bytes(data, magic)
            path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return result


def write_split_list(
    directory: Path,
    n_per_class: int | Sequence[int],
    num_classes: int = 3,
    list_name: str = "train.txt",
    ext: str = "png",
    seed: int = 0,
    folder: str = "images",
) -> tuple[Path, Path, np.ndarray]:
    """Images of varied sizes (ImageNet-like) under ``directory/<folder>/`` and a ``path label`` list.
    (Lists written into one directory need their own ``folder``, or their files overwrite each other.)

    Returns:
        (image root, list file, int64 labels in list order). Lines are written in a seeded shuffled
        order with a blank line in the middle, as real lists have no class grouping.
    """
    root = Path(directory)
    labels = shuffled_labels(n_per_class, num_classes, seed)
    rng = np.random.RandomState(seed + 1)
    lines = []
    for i, label in enumerate(labels):
        height, width = (int(v) for v in rng.randint(24, 64, size=2))
        pixels = class_images(np.array([label]), max(height, width), 3, num_classes, seed + 2 + i)[
            0
        ]
        relative = Path(folder) / f"n{label:04d}" / f"img_{i:05d}.{ext}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[:height, :width]).save(root / relative)
        lines.append(f"{relative.as_posix()} {label}")
    lines.insert(len(lines) // 2, "")
    list_file = root / list_name
    list_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, list_file, labels

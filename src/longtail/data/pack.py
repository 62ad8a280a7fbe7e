"""A data pack: one file holding a recipe's long-tailed training subset and its test split, encoded.

GPU machines get only what travels with the working tree (64 MiB), so raw uint8 arrays are too big
(CIFAR-10-LT r=100 plus its test set is 69 MB raw). A pack keeps each image *encoded*: the source
file's own bytes for image-file datasets (the JPEGs of the CIFAR-10 copy, so decoding the pack gives
exactly the pixels the source tree gives), or lossless PNG for array datasets (CIFAR pickles, idx).
It also stores what the run folder needs to be exact: the LT index record (indices into the full
training split), class names, and the per-channel mean/std of the *full* training split.

Format: an uncompressed ``.npz`` with, per split, ``<split>_bytes`` (uint8, all images
concatenated), ``<split>_offsets`` (int64 [N + 1]) and ``<split>_labels`` (int64 [N]), plus
``meta`` (UTF-8 JSON bytes).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from longtail.data.arrays import ImageArrays
from longtail.errors import LongtailError
from longtail.io import atomic_write

PACK_VERSION = 1
SPLITS = ("train", "test")


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] (C = 1 or 3) -> PNG bytes (lossless)."""
    mode = "L" if image.shape[-1] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if mode == "L" else image, mode).save(
        buffer, "PNG", optimize=True
    )
    return buffer.getvalue()


def _concat(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets


def write_pack(
    path: Path,
    splits: Mapping[str, tuple[Sequence[bytes], np.ndarray]],
    meta: dict[str, Any],
) -> None:
    """Write encoded images and labels per split plus ``meta`` (JSON-able) atomically to ``path``."""
    arrays: dict[str, np.ndarray] = {}
    for split, (blobs, labels) in splits.items():
        if len(blobs) != len(labels):
            raise ValueError(f"{split}: {len(blobs)} images but {len(labels)} labels")
        arrays[f"{split}_bytes"], arrays[f"{split}_offsets"] = _concat(blobs)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
    record = {"version": PACK_VERSION, **meta}
    arrays["meta"] = np.frombuffer(json.dumps(record).encode(), dtype=np.uint8)
    atomic_write(Path(path), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def _open(path: Path) -> Any:
    if not path.is_file():
        raise LongtailError(
            f"data pack {path} does not exist: build it with 'longtail pack RECIPE OUT'"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile):
        raise LongtailError(f"data pack {path} is not a readable pack: rebuild it") from None


def _members(path: Path, names: Sequence[str]) -> list[np.ndarray]:
    """Read npz members; a missing member or a damaged (CRC) member is a one-line error."""
    with _open(path) as npz:
        try:
            return [npz[name] for name in names]
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, zlib.error):
            raise LongtailError(f"data pack {path} is damaged or not a pack: rebuild it") from None


def read_pack_meta(path: str | Path) -> dict[str, Any]:
    """The pack's JSON record: classes, channels, mean, std, lt_index, subset, source."""
    (raw,) = _members(Path(path), ["meta"])
    try:
        meta: dict[str, Any] = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LongtailError(f"data pack {path} has an unreadable record: rebuild it") from None
    if not isinstance(meta, dict) or meta.get("version") != PACK_VERSION:
        raise LongtailError(f"data pack {path} is not a version-{PACK_VERSION} pack: rebuild it")
    return meta


def read_pack(path: str | Path, split: str) -> ImageArrays:
    """Decode one split of a pack into memory: uint8 [N, H, W, C]."""
    path = Path(path)
    meta = read_pack_meta(path)
    if split not in SPLITS:
        raise LongtailError(f"split {split!r} is not in data pack {path}: use train or test")
    mode = "L" if meta["channels"] == 1 else "RGB"
    blob, offsets, labels = _members(path, [f"{split}_{k}" for k in ("bytes", "offsets", "labels")])
    images = []
    for i in range(len(labels)):
        chunk = blob[offsets[i] : offsets[i + 1]].tobytes()
        try:
            with Image.open(io.BytesIO(chunk)) as image:
                pixels = np.asarray(image.convert(mode))
        except OSError:
            raise LongtailError(
                f"image {i} of {split} in data pack {path} is corrupt: rebuild it"
            ) from None
        images.append(pixels if pixels.ndim == 3 else pixels[..., None])
    if images and len({im.shape for im in images}) != 1:
        raise LongtailError(f"data pack {path} holds images of several sizes: rebuild it")
    stacked = np.stack(images) if images else np.zeros((0, 1, 1, meta["channels"]), np.uint8)
    return ImageArrays(stacked, labels.astype(np.int64), list(meta["classes"]))

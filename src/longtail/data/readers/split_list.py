"""Split-list files as published for ImageNet-LT, Places-LT and iNaturalist 2018.

Each non-empty line is ``relative/path label`` (an integer label); paths are relative to an image
root. Line order is the source order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.data.readers._decode import decode_files
from longtail.errors import LongtailError
from longtail.text_files import read_utf8_text


@dataclass
class FileList:
    """Image files with labels, not decoded.

    Attributes:
        paths: absolute-or-root-joined image paths, in list-file order.
        labels: int64 ``[N]``.
        num_classes: largest label + 1.
    """

    paths: list[Path]
    labels: np.ndarray
    num_classes: int


def _text_lines(list_file: Path) -> list[str]:
    """The list's lines: UTF-8, with or without a byte-order mark, LF or CRLF line ends (both read
    as they are meant); any other encoding is one line naming the first bad byte's line."""
    text = read_utf8_text(  # a leading BOM (Windows editors) is not part of a path
        list_file,
        lambda n, b: f"{list_file}:{n}: not UTF-8 text (byte 0x{b:02x}): save the list as UTF-8",
    )
    return text.splitlines()


def read_split_list(
    list_file: str | Path, image_root: str | Path, check_files: bool = True
) -> FileList:
    """Parse ``list_file`` and (``check_files``) check that every listed image exists under
    ``image_root``. Without the check nothing but the list is read (labels only: counting a
    published split needs no images).

    Raises:
        LongtailError: the list is missing or empty, a line is malformed (reported as file:line),
        or images are missing (the first one is named, with the count).
    """
    list_file, image_root = Path(list_file), Path(image_root)
    if not list_file.is_file():
        raise LongtailError(
            f"split list {list_file} does not exist: "
            "pass list_file= or put <split>.txt in data.root"
        )
    paths: list[Path] = []
    labels: list[int] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(_text_lines(list_file), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{list_file}:{number}"
        if len(fields) != 2:
            raise LongtailError(
                f"{where}: expected 'relative/path label', got {len(fields)} fields: fix that line"
            )
        try:
            label = int(fields[1])
        except ValueError:
            raise LongtailError(
                f"{where}: label {fields[1]!r} is not an integer: fix that line"
            ) from None
        if label < 0:
            raise LongtailError(f"{where}: label {label} is negative: labels start at 0")
        if fields[0] in first_line:  # counted twice would skew the class counts silently
            raise LongtailError(
                f"{where}: {fields[0]} is listed again (first at line {first_line[fields[0]]}):"
                " remove the duplicate line"
            )
        first_line[fields[0]] = number
        paths.append(image_root / fields[0])
        labels.append(label)
    if not paths:
        raise LongtailError(
            f"split list {list_file} lists no images: fill it with 'path label' lines"
        )
    missing = [p for p in paths if not p.is_file()] if check_files else []
    if missing:
        raise LongtailError(
            f"{len(missing)} of {len(paths)} images in {list_file} are missing, the first is "
            f"{missing[0]}: point data.root at the image root the list is relative to"
        )
    label_array = np.asarray(labels, dtype=np.int64)
    return FileList(paths=paths, labels=label_array, num_classes=int(label_array.max()) + 1)


def decode_file_list(
    files: FileList, size: int, channels: int = 3, *, workers: int = 1
) -> ImageArrays:
    """Decode every file, shorter side resized to ``size`` then centre-cropped to a square.

    For small experiments: the whole set is held in memory as uint8 ``[N, size, size, channels]``.
    Class names are "0".."C-1".
    """
    if size < 1:
        raise LongtailError(
            f"image size must be a positive integer (got {size}): fix data.image_size"
        )
    images = decode_files(files.paths, channels, crop_size=size, workers=workers)
    return ImageArrays(images, files.labels, [str(c) for c in range(files.num_classes)])

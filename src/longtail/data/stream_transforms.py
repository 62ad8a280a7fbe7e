"""Per-image decoding for the streaming path: ImageNet-style training crops and evaluation crops.

Training (torchvision's ``RandomResizedCrop(224) + RandomHorizontalFlip``, the PIL path): a box
(i, j, h, w) drawn on the image's own size (:func:`longtail.data.augment.resized_boxes`, from
uniforms drawn for the global batch elsewhere), cropped, resized to ``size x size`` (bilinear),
flipped when asked. Evaluation (``Resize(256) + CenterCrop(224)``): the shorter side resized to
``resize``, the centre ``crop x crop`` kept.

JPEGs are decoded at reduced size where that loses nothing the output needs: Pillow's draft mode
lets the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT, to the smallest scale that still
leaves the box (training) or the shorter side (evaluation) at least the output size; the box is
rescaled to match. Other formats decode in full. ``draft=False`` gives the plain full decode.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from longtail.data.augment import resized_boxes
from longtail.data.readers._decode import _FORMATS, DECODE_ERRORS, image_error, pillow_mode
from longtail.errors import LongtailError

RESAMPLE = Image.Resampling.BILINEAR


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path, formats=_FORMATS)
    except DECODE_ERRORS as error:
        raise image_error(path, error, "the list") from None


def _load(image: Image.Image, path: Path, mode: str) -> Image.Image:
    """Decode (after any draft request) and convert to ``mode``; a broken file is one line."""
    try:
        image.load()
        return image if image.mode == mode else image.convert(mode)
    except DECODE_ERRORS as error:
        raise image_error(path, error, "the list") from None


def _draft(image: Image.Image, mode: str, need: tuple[int, int]) -> tuple[float, float]:
    """Ask a JPEG decoder for the smallest DCT scale at least ``need`` (w, h) in size; return the
    (x, y) factors from original to decoded coordinates (1, 1 when nothing changed)."""
    width, height = image.size
    if image.format != "JPEG":
        return 1.0, 1.0
    image.draft(mode, (max(1, need[0]), max(1, need[1])))
    return image.size[0] / width, image.size[1] / height


def train_crop(
    path: Path,
    u: torch.Tensor,
    pos: torch.Tensor,
    flip: bool,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    channels: int = 3,
    draft: bool = True,
) -> np.ndarray:
    """uint8 ``[size, size, channels]``: the RandomResizedCrop of ``path`` from its drawn uniforms.

    Args:
        u: [10, 2] candidate uniforms, pos: [2] placement uniforms (see ``resized_boxes``).
        flip: mirror left-right after the crop.
    """
    mode = pillow_mode(channels)
    with _open(path) as image:
        width, height = image.size
        i, j, h, w = (
            int(v) for v in resized_boxes(u[None], pos[None], height, width, scale, ratio)[0]
        )
        fx, fy = (
            _draft(image, mode, (math.ceil(width * size / w), math.ceil(height * size / h)))
            if draft
            else (1.0, 1.0)
        )
        pixels = _load(image, path, mode)
        box = (j, i, j + w, i + h)
        if (fx, fy) != (1.0, 1.0):  # the box in the reduced image's pixels
            box = (round(j * fx), round(i * fy), round((j + w) * fx), round((i + h) * fy))
        out = pixels.crop(box).resize((size, size), RESAMPLE)
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out).reshape(size, size, channels)


def eval_crop(
    path: Path, resize: int, crop: int, channels: int = 3, draft: bool = True
) -> np.ndarray:
    """uint8 ``[crop, crop, channels]``: shorter side to ``resize`` (bilinear), centre ``crop``.

    torchvision's ``Resize(resize)`` sizes the longer side ``int(resize * long / short)`` and
    ``CenterCrop`` starts at ``round((side - crop) / 2)``; the same here.
    """
    if crop > resize:
        raise LongtailError(f"eval crop {crop} exceeds the resize {resize}: crop at most {resize}")
    mode = pillow_mode(channels)
    with _open(path) as image:
        width, height = image.size
        short = min(width, height)
        if draft:
            _draft(
                image, mode, (math.ceil(width * resize / short), math.ceil(height * resize / short))
            )
        pixels = _load(image, path, mode)
        # the target is computed on the original size, so a drafted decode lands on the same grid
        new_w, new_h = (
            (resize, int(resize * height / width))
            if width <= height
            else (int(resize * width / height), resize)
        )
        if pixels.size != (new_w, new_h):
            pixels = pixels.resize((new_w, new_h), RESAMPLE)
        left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
        out = pixels.crop((left, top, left + crop, top + crop))
    return np.asarray(out).reshape(crop, crop, channels)

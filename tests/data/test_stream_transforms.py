"""The streaming path's per-image crops against hand-computed references.

Geometry is checked where no resampling happens (a box of exactly the output size, a shorter side
already at the resize target), so that the expected pixels are plain slices of the source; the
resampling itself is Pillow's bilinear filter, checked on a constant image. Draft-mode JPEG
decoding is checked against the full decode.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.data.stream_transforms import eval_crop, train_crop
from longtail.errors import LongtailError

RATIO = (3 / 4, 4 / 3)


def _png(tmp_path: Path, height: int, width: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    pixels = np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)
    path = tmp_path / f"img_{height}x{width}.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def _box_by_hand(height: int, width: int, u: torch.Tensor, pos: torch.Tensor,
                 scale: tuple[float, float],
                 ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:  # fmt: skip
    """torchvision's RandomResizedCrop.get_params, one candidate at a time, from the uniforms."""
    area = height * width
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for k in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * float(u[k, 0]))
        aspect = math.exp(lo + (hi - lo) * float(u[k, 1]))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            i = min(int(float(pos[0]) * (height - h + 1)), height - h)
            j = min(int(float(pos[1]) * (width - w + 1)), width - w)
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("seed", range(4))
def test_a_box_of_the_output_size_is_a_plain_slice(tmp_path: Path, seed: int) -> None:
    """scale fixed at size^2 / area and ratio 1 make every candidate size x size: no resampling."""
    path, pixels = _png(tmp_path, 40, 52, seed)
    size = 24
    s = size * size / (40 * 52)
    g = torch.Generator().manual_seed(seed)
    u, pos = torch.rand(10, 2, generator=g), torch.rand(2, generator=g)
    i, j, h, w = _box_by_hand(40, 52, u, pos, (s, s), (1.0, 1.0))
    assert (h, w) == (size, size)
    for flip in (False, True):
        got = train_crop(path, u, pos, flip, size, (s, s), (1.0, 1.0))
        want = pixels[i : i + size, j : j + size]
        np.testing.assert_array_equal(got, want[:, ::-1] if flip else want)


@pytest.mark.parametrize("seed", range(6))
def test_drawn_boxes_follow_torchvision_and_resize_by_pillow(tmp_path: Path, seed: int) -> None:
    path, pixels = _png(tmp_path, 37, 61, seed)
    g = torch.Generator().manual_seed(100 + seed)
    u, pos = torch.rand(10, 2, generator=g), torch.rand(2, generator=g)
    i, j, h, w = _box_by_hand(37, 61, u, pos, (0.08, 1.0))
    want = Image.fromarray(pixels[i : i + h, j : j + w]).resize((16, 16), Image.Resampling.BILINEAR)
    got = train_crop(path, u, pos, False, 16, (0.08, 1.0), RATIO)
    np.testing.assert_array_equal(got, np.asarray(want))


def test_no_candidate_fits_falls_back_to_the_clamped_centre(tmp_path: Path) -> None:
    """An area fraction above 1 never fits: a 40 x 20 image (ratio 2) keeps its height, width
    round(20 * 4/3) = 27, centred at (0, 6)."""
    path, pixels = _png(tmp_path, 20, 40)
    u, pos = torch.rand(10, 2), torch.rand(2)
    assert _box_by_hand(20, 40, u, pos, (2.0, 2.0)) == (0, 6, 20, 27)
    want = Image.fromarray(pixels[0:20, 6:33]).resize((8, 8), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(train_crop(path, u, pos, False, 8, (2.0, 2.0), RATIO), want)


def test_eval_crop_is_resize_then_centre_crop(tmp_path: Path) -> None:
    """Shorter side already 256: no resampling, the centre 224 of a 256 x 300 image is rows
    16..240 and columns round((300 - 224) / 2) = 38..262."""
    path, pixels = _png(tmp_path, 256, 300)
    np.testing.assert_array_equal(eval_crop(path, 256, 224), pixels[16:240, 38:262])
    # a constant image stays constant through the resize (128 x 96 -> 341 x 256 -> 224 x 224)
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((96, 128, 3), 77, np.uint8)).save(flat)
    got = eval_crop(flat, 256, 224)
    assert got.shape == (224, 224, 3) and np.all(got == 77)
    with pytest.raises(LongtailError, match="exceeds the resize"):
        eval_crop(flat, 200, 224)


def _jpeg(tmp_path: Path, height: int, width: int) -> Path:
    """A smooth ImageNet-sized photo stand-in (gradients and blobs; JPEG-friendly)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 127 + 120 * np.sin(x / 37.0) * np.cos(y / 53.0)
    g = 127 + 120 * np.sin((x + y) / 71.0)
    b = 127 + 120 * np.cos(np.hypot(x - width / 3, y - height / 2) / 29.0)
    pixels = np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_draft_decoding_gives_the_full_decode_within_a_few_levels(tmp_path: Path) -> None:
    path = _jpeg(tmp_path, 600, 800)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        u, pos = torch.rand(10, 2, generator=g), torch.rand(2, generator=g)
        fast = train_crop(path, u, pos, False, 64, (0.08, 1.0), RATIO).astype(int)
        full = train_crop(path, u, pos, False, 64, (0.08, 1.0), RATIO, draft=False).astype(int)
        assert np.abs(fast - full).mean() < 4.0
    fast, full = eval_crop(path, 64, 56).astype(int), eval_crop(path, 64, 56, draft=False)
    assert np.abs(fast - full.astype(int)).mean() < 4.0


def test_a_corrupt_or_missing_image_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _jpeg(tmp_path, 200, 300)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(path.read_bytes()[:400])  # a truncated file
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    u, pos = torch.rand(10, 2), torch.rand(2)
    for bad in (broken, garbage, tmp_path / "gone.jpg"):
        with pytest.raises(LongtailError, match=str(bad)) as info:
            train_crop(bad, u, pos, False, 32, (0.08, 1.0), RATIO)
        assert "\n" not in str(info.value)
        with pytest.raises(LongtailError, match=str(bad)):
            eval_crop(bad, 36, 32)

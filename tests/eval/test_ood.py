"""Bringing another dataset to the training format (match_format), and balanced probe subsets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from longtail.errors import LongtailError
from longtail.eval.ood import balanced_indices, match_format


def _random(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def _close_to_rounded(got: np.ndarray, exact: np.ndarray) -> None:
    """``got`` is ``exact`` rounded, except within 1e-3 of a .5 tie, where either neighbour goes."""
    got = got.astype(np.float64)
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    assert np.array_equal(got[~tie], np.round(exact[~tie]))
    assert np.all(np.abs(got[tie] - exact[tie]) <= 0.5 + 1e-3)


def test_same_format_is_the_identity() -> None:
    images = _random((3, 1, 9, 7))
    out = match_format(images, 1, (9, 7))
    assert out.dtype == torch.uint8 and torch.equal(out, images)


def test_grey_to_rgb_repeats_the_plane() -> None:
    grey = _random((4, 1, 10, 10))
    rgb = match_format(grey, 3, (10, 10))
    assert rgb.shape == (4, 3, 10, 10) and rgb.is_contiguous()
    for c in range(3):
        assert torch.equal(rgb[:, c], grey[:, 0])
    resized = match_format(grey, 3, (14, 14))  # resizing commutes with the repeat
    grey_resized = match_format(grey, 1, (14, 14))
    assert all(torch.equal(resized[:, c], grey_resized[:, 0]) for c in range(3))


def test_rgb_to_grey_is_itu601_luma() -> None:
    rgb = _random((2, 3, 16, 16), seed=1)
    grey = match_format(rgb, 1, (16, 16))
    assert grey.shape == (2, 1, 16, 16)
    exact = np.zeros((2, 16, 16))
    for n in range(2):
        for i in range(16):
            for j in range(16):
                r, g, b = (int(rgb[n, c, i, j]) for c in range(3))
                exact[n, i, j] = 0.299 * r + 0.587 * g + 0.114 * b
    _close_to_rounded(grey[:, 0].numpy(), exact)


def test_rgb_to_grey_equals_pil_convert_l() -> None:
    rgb = _random((1, 3, 64, 64), seed=0)
    pil = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).convert("L"))
    assert np.array_equal(match_format(rgb, 1, (64, 64))[0, 0].numpy(), pil)


def _bilinear_by_hand(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resampling (align_corners=False), no antialiasing, float64."""
    in_h, in_w = image.shape

    def taps(out_index: int, scale: float, size: int) -> tuple[int, int, float]:
        src = max((out_index + 0.5) * scale - 0.5, 0.0)
        low = min(int(math.floor(src)), size - 1)
        return low, min(low + 1, size - 1), src - low

    result = np.zeros((out_h, out_w))
    for i in range(out_h):
        y0, y1, wy = taps(i, in_h / out_h, in_h)
        for j in range(out_w):
            x0, x1, wx = taps(j, in_w / out_w, in_w)
            top = (1 - wx) * image[y0, x0] + wx * image[y0, x1]
            bottom = (1 - wx) * image[y1, x0] + wx * image[y1, x1]
            result[i, j] = (1 - wy) * top + wy * bottom
    return result


def test_upsampling_28_to_32_is_bilinear() -> None:
    grey = _random((2, 1, 28, 28), seed=2)
    up = match_format(grey, 1, (32, 32))
    reference = F.interpolate(grey.float(), size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(up, reference.round().to(torch.uint8))
    for n in range(2):
        _close_to_rounded(up[n, 0].numpy(), _bilinear_by_hand(grey[n, 0].double().numpy(), 32, 32))


@pytest.mark.parametrize("size", [16, 20])
def test_shrinking_is_antialiased_like_pil(size: int) -> None:
    grey = _random((1, 1, 32, 32), seed=3)
    small = match_format(grey, 1, (size, size))[0, 0].numpy().astype(int)
    pil = Image.fromarray(grey[0, 0].numpy()).resize((size, size), Image.Resampling.BILINEAR)
    assert np.abs(small - np.asarray(pil).astype(int)).max() <= 1  # PIL rounds between passes


@pytest.mark.parametrize(
    ("channels", "size"), [(1, (32, 32)), (3, (32, 32)), (1, (16, 16)), (3, (20, 12))]
)
def test_constant_images_stay_constant(channels: int, size: tuple[int, int]) -> None:
    for value in (0, 77, 255):
        images = torch.full((2, 1 if channels == 3 else 3, 28, 28), value, dtype=torch.uint8)
        out = match_format(images, channels, size)
        assert out.shape == (2, channels, *size) and bool((out == value).all())


def test_rgb_to_grey_with_resize_is_luma_of_the_resized_planes() -> None:
    rgb = _random((2, 3, 32, 32), seed=4)
    grey = match_format(rgb, 1, (20, 20)).int()
    planes = match_format(rgb, 3, (20, 20)).double()
    luma = 0.299 * planes[:, 0] + 0.587 * planes[:, 1] + 0.114 * planes[:, 2]
    assert (grey[:, 0] - luma).abs().max() <= 1.0  # linear maps commute, up to two roundings


def test_chunks_of_4096_images_cover_every_image() -> None:
    images = _random((4097, 1, 3, 3), seed=5)
    out = match_format(images, 3, (4, 4))
    assert out.shape == (4097, 3, 4, 4)
    assert torch.equal(out[4090:], match_format(images[4090:], 3, (4, 4)))
    assert torch.equal(out[:3], match_format(images[:3], 3, (4, 4)))


@pytest.mark.parametrize(
    ("images", "channels"),
    [
        (torch.zeros(2, 1, 8, 8), 3),  # float, not uint8
        (torch.zeros(2, 8, 8, dtype=torch.uint8), 3),  # no channel axis
        (torch.zeros(2, 2, 8, 8, dtype=torch.uint8), 3),  # two channels
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), 4),  # four wanted
    ],
)
def test_bad_input_is_one_line(images: torch.Tensor, channels: int) -> None:
    with pytest.raises(LongtailError) as err:
        match_format(images, channels, (8, 8))
    assert "\n" not in str(err.value)


LABELS = np.array([2, 0, 1, 0, 2, 2, 1, 0, 2, 0, 2, 0, 2])  # class sizes 5, 2, 6


@pytest.mark.parametrize(("per_class", "n"), [(1, 1), (2, 2), (10, 2), (None, 2)])
def test_balanced_indices_counts(per_class: int | None, n: int) -> None:
    keep = balanced_indices(LABELS, 3, per_class, seed=0)
    assert keep.dtype.kind == "i" and len(np.unique(keep)) == len(keep) == 3 * n
    blocks = np.split(keep, 3)  # class by class, each block sorted
    for c, block in enumerate(blocks):
        assert np.all(LABELS[block] == c) and np.array_equal(block, np.sort(block))


def test_balanced_indices_follow_the_seeded_per_class_shuffle() -> None:
    labels = np.repeat(np.arange(4), [30, 25, 40, 20])[np.random.RandomState(9).permutation(115)]
    keep = balanced_indices(labels, 4, 10, seed=7)
    rng = np.random.RandomState(7)  # the documented draw: one permutation per class, in order
    expected = [np.sort(rng.permutation(np.flatnonzero(labels == c))[:10]) for c in range(4)]
    assert np.array_equal(keep, np.concatenate(expected))
    assert np.array_equal(keep, balanced_indices(labels, 4, 10, seed=7))
    assert not np.array_equal(keep, balanced_indices(labels, 4, 10, seed=8))


def test_balanced_indices_need_every_class() -> None:
    with pytest.raises(LongtailError, match="class 3 has no images") as err:
        balanced_indices(np.array([0, 1, 2, 0, 1, 2]), 4, None, seed=0)
    assert "\n" not in str(err.value)

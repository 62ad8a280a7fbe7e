"""The reference input pipeline: what the published CIFAR-LT code (LDAM-DRW, SupContrast, Hybrid-SC)
feeds its model, rebuilt without torchvision (it cannot be installed here).

A torch ``DataLoader`` over PIL images decoded once, per-image CPU transforms in worker processes,
pinned memory, and a host-to-device copy of every batch. The transforms follow torchvision's PIL
code path op for op: ``RandomCrop(32, padding=4)`` (zero fill), ``RandomHorizontalFlip``,
``RandomApply([ColorJitter(b, c, s, h)], p)`` (PIL.ImageEnhance for brightness / contrast /
saturation, an 8-bit HSV hue shift, the four in a random order), ``RandomGrayscale(p)`` with three
output channels, ``ToTensor`` and ``Normalize``. Random parameters come from torch's global RNG, as
in torchvision, which the DataLoader seeds per worker.

What to apply is the same :class:`~longtail.data.augment.AugmentSpec` our batched augmentation
takes, so both pipelines of the speed benchmark are built from one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from longtail.data.augment import AugmentSpec
from longtail.errors import LongtailError

PilOp = Callable[[Image.Image], Image.Image]
T = TypeVar("T")


def pad_crop(img: Image.Image, top: int, left: int, padding: int) -> Image.Image:
    """Zero-pad by ``padding`` on every side, then crop the original size at (top, left)."""
    w, h = img.size
    padded = ImageOps.expand(img, border=padding, fill=0)
    return padded.crop((left, top, left + w, top + h))


def hflip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def adjust_brightness(img: Image.Image, factor: float) -> Image.Image:
    """Blend with black: factor 0 is black, 1 the image (torchvision F.adjust_brightness)."""
    return ImageEnhance.Brightness(img).enhance(factor)


def adjust_contrast(img: Image.Image, factor: float) -> Image.Image:
    """Blend with the image's mean luma (an integer grey), as torchvision's PIL path."""
    return ImageEnhance.Contrast(img).enhance(factor)


def adjust_saturation(img: Image.Image, factor: float) -> Image.Image:
    """Blend with the luma image (PIL's ``Color`` enhancer)."""
    return ImageEnhance.Color(img).enhance(factor)


def adjust_hue(img: Image.Image, factor: float) -> Image.Image:
    """Rotate the 8-bit HSV hue by ``factor`` turns in [-0.5, 0.5] (torchvision's PIL path).

    torchvision adds ``np.int8(factor * 255)`` to the uint8 hue plane and lets it wrap; the wrap
    is written out here because numpy 2 refuses the in-place mixed-sign add.
    """
    h, s, v = img.convert("HSV").split()
    shifted = (np.asarray(h, dtype=np.int16) + int(factor * 255)) % 256
    hue = Image.fromarray(shifted.astype(np.uint8), "L")
    return Image.merge("HSV", (hue, s, v)).convert(img.mode)


def to_grayscale3(img: Image.Image) -> Image.Image:
    """ITU-R 601-2 luma (PIL ``convert('L')``) replicated to three channels."""
    luma = np.asarray(img.convert("L"))
    return Image.fromarray(np.dstack([luma, luma, luma]), "RGB")


def to_normalized_tensor(img: Image.Image, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """ToTensor then Normalize: uint8 H x W x C -> float32 [C, H, W], ((x / 255) - mean) / std."""
    array = np.array(img, dtype=np.uint8, copy=True)
    if array.ndim == 2:
        array = array[:, :, None]
    x = torch.from_numpy(array).permute(2, 0, 1).contiguous().to(torch.float32).div_(255)
    return x.sub_(mean).div_(std)


class RandomPadCrop:
    """RandomCrop(size, padding) with zero fill: corner uniform over the (2p + 1)^2 positions."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, img: Image.Image) -> Image.Image:
        top = int(torch.randint(0, 2 * self.padding + 1, size=(1,)).item())
        left = int(torch.randint(0, 2 * self.padding + 1, size=(1,)).item())
        return pad_crop(img, top, left, self.padding)


class RandomHorizontalFlip:
    def __call__(self, img: Image.Image) -> Image.Image:
        return hflip(img) if torch.rand(1) < 0.5 else img


class RandomColorJitter:
    """RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p).

    Factors: U(max(0, 1 - s), 1 + s) for the first three, U(-hue, hue) for the hue; a strength of 0
    leaves that op out, as torchvision does; the order is a fresh ``randperm(4)`` per image.
    """

    OPS: tuple[Callable[[Image.Image, float], Image.Image], ...] = (
        adjust_brightness,
        adjust_contrast,
        adjust_saturation,
        adjust_hue,
    )

    def __init__(self, strengths: tuple[float, float, float, float], p: float) -> None:
        b, c, s, h = strengths
        self.ranges = [(max(0.0, 1 - v), 1 + v) if v > 0 else None for v in (b, c, s)]
        self.ranges.append((-h, h) if h > 0 else None)
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.p < torch.rand(1):
            return img
        order = torch.randperm(4).tolist()
        factors = [
            None if r is None else float(torch.empty(1).uniform_(r[0], r[1])) for r in self.ranges
        ]
        for k in order:
            factor = factors[k]
            if factor is not None:
                img = self.OPS[k](img, factor)
        return img


class RandomGrayscale:
    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return to_grayscale3(img) if torch.rand(1) < self.p else img


class PilPipeline:
    """The Compose of one view: PIL ops, then ToTensor + Normalize -> float32 [C, H, W]."""

    def __init__(self, ops: Sequence[PilOp], mean: Sequence[float], std: Sequence[float]) -> None:
        self.ops = list(ops)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        for op in self.ops:
            img = op(img)
        return to_normalized_tensor(img, self.mean, self.std)


def pil_pipeline(spec: AugmentSpec, mean: Sequence[float], std: Sequence[float]) -> PilPipeline:
    """The torchvision Compose an ``AugmentSpec`` stands for (crop='pad' or 'none', zero fill)."""
    if spec.crop not in ("pad", "none") or (spec.crop == "pad" and spec.pad_mode != "zeros"):
        raise LongtailError(
            f"the reference pipeline has no crop={spec.crop!r} pad_mode={spec.pad_mode!r}: "
            "use crop=pad with pad_mode=zeros (RandomCrop(32, padding=4)) or crop=none"
        )
    ops: list[PilOp] = []
    if spec.crop == "pad":
        ops.append(RandomPadCrop(spec.padding))
    if spec.flip:
        ops.append(RandomHorizontalFlip())
    if any(v > 0 for v in spec.jitter) and spec.jitter_p > 0:
        ops.append(RandomColorJitter(spec.jitter, spec.jitter_p))
    if spec.grayscale_p > 0:
        ops.append(RandomGrayscale(spec.grayscale_p))
    return PilPipeline(ops, mean, std)


def pil_images(images_nhwc: np.ndarray) -> list[Image.Image]:
    """uint8 [N, H, W, 3] -> N RGB PIL images, decoded once and held by the dataset."""
    return [Image.fromarray(image, "RGB") for image in images_nhwc]


class PilViewsDataset(Dataset[tuple[torch.Tensor, ...]]):
    """Item i: (view_1, ..., view_V, label) with view_k = pipelines[k](image i), float [C, H, W]."""

    def __init__(
        self, images: list[Image.Image], labels: np.ndarray, pipelines: Sequence[PilPipeline]
    ) -> None:
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.pipelines = list(pipelines)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        img = self.images[i]
        return (*(pipeline(img) for pipeline in self.pipelines), self.labels[i])


def reference_loader(
    dataset: PilViewsDataset,
    batch_size: int,
    sampler: str,
    workers: int,
    pin_memory: bool,
    seed: int,
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Shuffled (``random``) or class-balanced (WeightedRandomSampler, 1/n_c per image) batches.

    Workers persist across epochs, which the published code (older PyTorch) did not have: the
    reference gets the benefit of the doubt.
    """
    generator = torch.Generator().manual_seed(seed)
    weighted = None
    if sampler == "class_balanced":
        counts = torch.bincount(dataset.labels).to(torch.float64)
        weights = (1.0 / counts)[dataset.labels]
        weighted = WeightedRandomSampler(weights.tolist(), len(dataset), True, generator)
    elif sampler != "random":
        raise LongtailError(
            f"reference sampler {sampler!r} is unknown: use random or class_balanced"
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=weighted is None,
        sampler=weighted,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        generator=generator,
    )


def forever(batches: Iterable[T]) -> Iterator[T]:
    """Epoch after epoch of batches (each ``iter`` of a loader is one epoch)."""
    while True:
        yield from batches

"""Bringing another dataset to a model's input format, for out-of-domain linear probes.

Liu et al. 2022 (paper 002) evaluate representations pre-trained on CIFAR-10(-LT) out of domain. We
probe on whatever second dataset is at hand; the default is Fashion-MNIST, whose 28x28 grey images
are upsampled to the pre-training size and repeated to its channels (issue 7).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.errors import LongtailError


def match_format(images: Tensor, channels: int, size: tuple[int, int]) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> uint8 ``[N, channels, size[0], size[1]]``.

    Spatial: bilinear resampling (``align_corners=False``, antialiased when shrinking), rounded back
    to uint8. Channels: grey (C = 1) to RGB repeats the plane; RGB to grey is Pillow's ``convert("L")``
    arithmetic (ITU-R 601-2, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``), before resizing. Done in chunks of 4096 images so the
    float copy stays small.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise LongtailError(
            f"images are {images.dtype} {tuple(images.shape)}: pass uint8 [N, C, H, W]"
        )
    c = images.shape[1]
    if c not in (1, 3) or channels not in (1, 3):
        raise LongtailError(f"channels {c} -> {channels}: only 1 (grey) and 3 (RGB) are supported")
    out = []
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096]
        if c == 3 and channels == 1:  # Pillow's integer luma, as registry.convert_channels
            rgb = chunk.to(torch.int32)
            chunk = (
                (rgb[:, :1] * 19595 + rgb[:, 1:2] * 38470 + rgb[:, 2:] * 7471 + 0x8000) >> 16
            ).to(torch.uint8)
        x = chunk.float()
        if tuple(x.shape[-2:]) != tuple(size):
            shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        if c == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out).contiguous()


def balanced_indices(
    labels: np.ndarray, num_classes: int, per_class: int | None, seed: int
) -> np.ndarray:
    """Indices of a class-balanced subset: ``min(per_class, smallest class)`` images of every class.

    Each class's images are shuffled by one seeded ``RandomState`` (classes in order) and the first
    n kept, so the subset depends only on the seed; ``per_class=None`` takes as many as the smallest
    class allows (a balanced split such as CIFAR's keeps all of it). Sorted per class.
    """
    pools = [np.flatnonzero(labels == c) for c in range(num_classes)]
    smallest = min(len(p) for p in pools)
    if smallest == 0:
        empty = next(c for c, p in enumerate(pools) if len(p) == 0)
        raise LongtailError(
            f"class {empty} has no images in the probe split: a balanced probe needs every class"
        )
    n = smallest if per_class is None else min(per_class, smallest)
    rng = np.random.RandomState(seed)
    return np.concatenate([np.sort(rng.permutation(p)[:n]) for p in pools])

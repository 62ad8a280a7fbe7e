"""Device-resident loader: the uint8 training set lives on the device; batches are built there.

The airbench recipe: small (CIFAR-sized) data sets fit in device memory, so a batch is an index
gather plus batched augmentation, with no worker processes and no host-to-device copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from longtail.data.augment import BatchAugment, channel_stats, normalize
from longtail.data.samplers import IndexSampler
from longtail.errors import LongtailError
from longtail.launch import Shard

Batch = (
    tuple[torch.Tensor, torch.Tensor]
    | tuple[list[torch.Tensor], torch.Tensor]
    | tuple[torch.Tensor | list[torch.Tensor], torch.Tensor, torch.Tensor]
)


def to_device_tensor(images_nhwc_uint8: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 [N, H, W, C] (or [N, H, W] grayscale) array -> contiguous uint8 [N, C, H, W] on device.

    The layout change happens after the copy, so a GPU does the transpose.
    """
    arr = images_nhwc_uint8
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim not in (3, 4):
        desc = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise LongtailError(
            f"images array is {desc}: pass a uint8 numpy array shaped [N, H, W, C] or [N, H, W]"
        )
    if arr.ndim == 3:
        arr = arr[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(arr)).to(device)
    return tensor.permute(0, 3, 1, 2).contiguous()


class DeviceLoader:
    """Batches of augmented views from a device-resident uint8 image tensor.

    Yields ``(x, y)`` with x float32 [B, C, H, W] for one augment, or ``([x_1, ..., x_V], y)`` for
    V augments (one independent view each); y is int64 [B]. With ``with_indices`` each batch also
    carries the int64 [B] positions of its images in ``images`` (per-example weights, rwSAM).
    Everything stays on ``images.device``. Nothing is prefetched, so ``state_dict`` between batches
    resumes exactly at the next one.

    ``shard`` (data parallelism, :mod:`longtail.launch`): every rank draws the same seeded global
    batch and augments it whole, then keeps its own ``shard.rows`` -- so W ranks together see
    exactly the batch one process would, whatever the sampler and augmentation draw. Each rank
    augments W times its share: cheap next to the model on the small images this loader holds.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        sampler: IndexSampler,
        augments: Sequence[BatchAugment],
        with_indices: bool = False,
        shard: Shard | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise LongtailError(
                f"loader images are {images.dtype} {tuple(images.shape)}: pass uint8 [N, C, H, W] "
                "(use to_device_tensor on an [N, H, W, C] array)"
            )
        if labels.shape != (images.shape[0],):
            raise LongtailError(
                f"loader labels shape {tuple(labels.shape)} does not match {images.shape[0]} "
                "images: pass one label per image"
            )
        if len(augments) == 0:
            raise LongtailError("loader got no augments: pass one BatchAugment per view")
        if labels.device != images.device or sampler.device != images.device:
            raise LongtailError(
                f"images ({images.device}), labels ({labels.device}) and sampler "
                f"({sampler.device}) are on different devices: move them to one device"
            )
        self.images = images
        self.labels = labels.long()
        self.sampler = sampler
        self.augments = list(augments)
        self.with_indices = with_indices
        self.shard = shard if shard is not None and shard.world > 1 else None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        for idx in self.sampler:
            x = self.images[idx]
            y = self.labels[idx]
            views = (
                self.augments[0](x) if len(self.augments) == 1 else [a(x) for a in self.augments]
            )
            if self.shard is not None:
                rows = self.shard.rows(len(idx))
                views = views[rows] if isinstance(views, torch.Tensor) else [v[rows] for v in views]
                y, idx = y[rows], idx[rows]
            yield (views, y, idx) if self.with_indices else (views, y)  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        """Sampler state and every augment's generator states."""
        return {
            "sampler": self.sampler.state_dict(),
            "augments": [augment.state_dict() for augment in self.augments],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_loader_state(self.sampler, self.augments, state)


def load_loader_state(
    sampler: IndexSampler, augments: Sequence[BatchAugment], state: dict[str, Any]
) -> None:
    """Restore a loader's sampler and its augments' generators from its ``state_dict``."""
    if len(state["augments"]) != len(augments):
        raise LongtailError(
            f"loader state has {len(state['augments'])} augment states for "
            f"{len(augments)} augments: resume with the same number of views"
        )
    sampler.load_state_dict(state["sampler"])
    for augment, augment_state in zip(augments, state["augments"], strict=True):
        augment.load_state_dict(augment_state)


def eval_batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Sequential, unaugmented batches: float32 normalised [B, C, H, W] and int64 [B] labels.

    The last batch may be short; every image is visited once, in order.
    """
    if batch_size < 1:
        raise LongtailError(f"eval batch_size {batch_size} is invalid: use a positive integer")
    m, s = channel_stats(mean, std, images.shape[1], images.device)
    for start in range(0, images.shape[0], batch_size):
        stop = start + batch_size
        yield normalize(images[start:stop], m, s), labels[start:stop].long()

"""A run's data as the epoch loop sees it: training and test tensors (or files) on one device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from longtail.data.augment import channel_stats, normalize
from longtail.data.stream import FileImages


@dataclass
class PreparedData:
    """Everything the epoch loop needs from the data, on one device."""

    train_images: torch.Tensor | FileImages  # uint8 [N, C, H, W], or files when streaming
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor | FileImages  # uint8 [M, C, H, W], or files when streaming
    test_labels: torch.Tensor  # int64 [M]
    classes: list[str]
    train_counts: list[int]  # per class, in the long-tailed training subset
    mean: list[float]  # per channel, of the full training split, in [0, 1] units
    std: list[float]
    index_record: dict[str, Any] = field(default_factory=dict)  # what lt_index.json holds

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train_images.shape[1])


def input_transform(
    channels_last: bool, data: PreparedData, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 batch -> the normalised float model input (no augmentation), NHWC when ``channels_last``."""
    mean, std = channel_stats(data.mean, data.std, data.in_chans, device)  # uploaded once

    def transform(x: torch.Tensor) -> torch.Tensor:
        x = normalize(x, mean, std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    return transform

"""Which data path a run takes (``data.loader``), and the streamed data when it streams.

The device path holds the uint8 training and test sets on the device: per image C x S x S bytes
(224 px RGB: 147 KiB; ImageNet-LT's 115,846 + 50,000 images 23 GiB, iNaturalist 2018's 437,513 +
24,426 images 65 GiB), and about twice that on the host while decoding. ``auto`` streams when that
exceeds half the memory free where it would live (the GPU's, or the host's for a CPU run) and says
so on stderr, once per run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from longtail.data.class_names import align_labels
from longtail.data.config import DataConfig
from longtail.data.prepared import PreparedData
from longtail.data.source import DataSource
from longtail.data.stream import FileImages
from longtail.data.subset import spread_indices
from longtail.errors import LongtailError

# the ImageNet statistics every ImageNet-LT / Places-LT / iNaturalist code base normalises with
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GIB = 1024**3


def device_bytes(images: int, size: int, channels: int = 3) -> int:
    """Bytes of ``images`` uint8 images of ``size x size x channels`` held on the device."""
    return images * channels * size * size


def free_bytes(device: torch.device) -> int:
    """Memory free where the device path would keep the data (GPU memory, or host RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        return 0


def streams(cfg: DataConfig, device: torch.device) -> bool:
    """Whether this run streams its images (``data.loader``; ``auto`` from the estimate)."""
    if cfg.loader != "auto":
        return cfg.loader == "stream"
    if cfg.dataset not in ("split_list", "imagefolder") or cfg.image_size is None:
        return False  # arrays (CIFAR, MNIST-likes, packs) are small, or decoded at their own size
    counts = [_count(cfg, split) for split in ("train", "test")]
    need = device_bytes(sum(counts), cfg.image_size, cfg.channels or 3)
    free = free_bytes(device)
    stream = need > free // 2
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(
            f"data: the device path needs {need / GIB:.1f} GiB for {sum(counts)} images at"
            f" {cfg.image_size} px, {free / GIB:.1f} GiB free on {device}:"
            f" {'streaming from files' if stream else 'holding them on the device'}"
            " (data.loader=device|stream decides)",
            file=sys.stderr,
        )
    return stream


def _count(cfg: DataConfig, split: str) -> int:
    listed = DataSource.of(cfg).files(split, check_files=False)
    return 0 if listed is None else len(listed[1])


def _files(source: DataSource, split: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """A split's files for streaming; a one-line error for array data."""
    cfg = source.cfg
    listed = source.files(split)
    if listed is None:
        raise LongtailError(
            f"data.loader=stream reads image files (a split list or an ImageFolder tree), not"
            f" {cfg.dataset} arrays: use data.loader=device for it"
        )
    return listed


def default_workers() -> int:
    """DataLoader workers a process: the CPUs shared over this node's processes, at most 8."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, (os.cpu_count() or 1) // max(1, local) - 1))


def eval_resize(cfg: DataConfig) -> int:
    """The shorter side before the centre crop: ``data.eval_resize``, else 256/224 of the crop."""
    assert cfg.image_size is not None
    return cfg.eval_resize or round(cfg.image_size * 256 / 224)


def prepare_streamed(source: DataSource, device: torch.device) -> PreparedData:
    """The training subset and the test split as files (labels on the device); nothing decoded."""
    cfg = source.cfg
    if cfg.image_size is None:
        raise LongtailError(
            "data.loader=stream crops images to data.image_size: set it (224 for ImageNet-LT,"
            " Places-LT, iNaturalist)"
        )
    paths, labels, classes = _files(source, "train")
    test_paths, test_labels, test_classes = _files(source, "test")
    test_labels = align_labels(test_labels, test_classes, classes, "test")
    if len(test_labels) and int(test_labels.max()) >= len(classes):
        raise LongtailError(
            f"the test split has labels up to {int(test_labels.max())} but the training split"
            f" {len(classes)} classes: both splits must share one label set"
        )
    record = source.subset(labels, len(classes))
    chosen = np.asarray(record["indices"], dtype=np.int64)
    if cfg.test_limit is not None:
        keep = spread_indices(len(test_labels), cfg.test_limit)
        test_paths, test_labels = [test_paths[i] for i in keep], test_labels[keep]
    workers = cfg.workers if cfg.workers is not None else default_workers()
    channels = cfg.channels or 3

    def files(selected: list[Path]) -> FileImages:
        return FileImages(selected, device, resize=eval_resize(cfg), crop=cfg.image_size or 0,
                          channels=channels, workers=workers)  # fmt: skip

    return PreparedData(
        train_images=files([paths[i] for i in chosen]),
        train_labels=torch.as_tensor(labels[chosen], dtype=torch.int64, device=device),
        test_images=files(list(test_paths)),
        test_labels=torch.as_tensor(test_labels, dtype=torch.int64, device=device),
        classes=classes,
        train_counts=list(record["counts"]),
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        index_record=record,
    )

"""data.*: which images a run reads, and which long-tailed subset of them it trains on."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from longtail.data.registry import DATASETS
from longtail.errors import LongtailError


@dataclass
class DataConfig:
    """Which images, and which long-tailed subset of the training split."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "dataset": (*DATASETS, "pack"),
        "profile": ("exp", "step"),
        "subset_rule": ("shuffle", "first", "none"),
        "loader": ("auto", "device", "stream"),
    }

    # cifar10 | cifar100 | fashion_mnist | mnist | imagefolder | split_list | pack
    dataset: str = "cifar10"
    root: str = "../shared/data/cifar10-jpeg"  # relative paths resolve against the current folder
    # split_list: the published lists (`relative/path label` lines, relative to data.root); unset:
    # <root>/<split>.txt. val is held-out data for choices (tau-norm's tau), test the reported split
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None
    channels: int | None = None  # 1 or 3; None keeps the dataset's own (1 for MNIST-likes)
    image_size: int | None = None  # split_list only: resize the shorter side, then centre-crop
    # (streaming: the training crop and the evaluation crop, 224 for the ImageNet-scale papers)
    # where the training set lives: device (decoded once, held as uint8 on the device), stream
    # (files decoded per batch by DataLoader workers), auto (stream when the device copy would not
    # fit in half the free memory; the estimate is printed)
    loader: str = "auto"
    workers: int | None = None  # stream: decoding workers a process; None: min(8, CPUs / processes)
    eval_resize: int | None = None  # stream: shorter side before the centre crop; None: 256/224 x
    cache_dir: str | None = "data/cache"  # decoded uint8 arrays are cached here (null: no cache)
    imbalance_ratio: float = 100.0  # r = n_max / n_min; 1 gives a balanced set
    profile: str = "exp"  # exp: n_c = floor(n_max * r^(-c/(C-1))); step: half n_max, half n_max / r
    n_max: int | None = None  # largest class; default: the largest class of the full training split
    total: int | None = None  # fixed total size (same profile shape), for equal-size studies
    # shuffle: LDAM-DRW's seeded per-class shuffle; first: source order; none: the training split
    # as given, every image (a naturally long-tailed published split: ImageNet-LT, Places-LT, iNat)
    subset_rule: str = "shuffle"
    subset_seed: int = 0
    index_file: str | None = None  # reuse a saved lt_index.json instead of building the subset
    test_limit: int | None = None  # evaluate on N test images spread over the split (quick runs)

    def check(self) -> None:
        """The section's own rules (one-line errors)."""
        ratio = self.imbalance_ratio
        if not math.isfinite(ratio) or ratio < 1:
            raise LongtailError(
                f"data.imbalance_ratio must be >= 1 (got {ratio}): r = n_max / n_min, 1 is balanced"
            )
        lists = [n for n in ("train_list", "val_list", "test_list") if getattr(self, n)]
        if lists and self.dataset != "split_list":
            raise LongtailError(
                f"data.{lists[0]} names a split list, which only dataset split_list reads (got"
                f" data.dataset={self.dataset}): set data.dataset=split_list or drop"
                f" data.{lists[0]}"
            )
        for name in ("total", "test_limit", "n_max", "image_size", "eval_resize"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LongtailError(f"data.{name} must be >= 1 or null (got {value})")
        if self.workers is not None and self.workers < 0:
            raise LongtailError(f"data.workers must be >= 0 or null (got {self.workers})")
        if self.channels not in (None, 1, 3):
            raise LongtailError(f"data.channels must be 1, 3 or null (got {self.channels})")

"""``longtail pack RECIPE OUT``: a recipe's LT training subset and test split in one encoded file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.data.config import DataConfig
from longtail.data.pack import encode_png, write_pack
from longtail.data.registry import image_files
from longtail.data.source import DataSource
from longtail.data.subset import spread_indices, subset_fields


def _encoded(cfg: DataConfig, split: str, arrays: ImageArrays, indices: np.ndarray) -> list[bytes]:
    """Source file bytes where the dataset is image files (exact), else lossless PNG."""
    files = image_files(cfg.dataset, cfg.root, split)
    if files is not None and cfg.channels in (None, 3):
        return [files[i].read_bytes() for i in indices]
    return [encode_png(arrays.images[i]) for i in indices]


def build_pack(cfg: DataConfig, out: str | Path, whole: bool = False) -> dict[str, Any]:
    """Write the pack for ``cfg`` to ``out``; return a summary (counts, sizes).

    ``whole``: the entire training split in source order instead of the config's subset; runs on
    such a pack choose their own subset exactly as on the source (:class:`~longtail.data.source.PackSource`), and the
    balanced probe can use every image.
    """
    source = DataSource.of(cfg)
    full = source.arrays("train")
    test = source.arrays("test")
    if whole:
        indices = np.arange(len(full.labels))
        counts = np.bincount(full.labels, minlength=full.num_classes).tolist()
        record = {"dataset": cfg.dataset, "whole": True, "indices": indices.tolist(),
                  "counts": counts, "total": len(indices)}  # fmt: skip
    else:
        record = source.subset(full.labels, full.num_classes)
    train_idx = np.asarray(record["indices"], dtype=np.int64)
    test_idx = spread_indices(len(test.labels), cfg.test_limit or len(test.labels))
    mean, std = source.stats(full)
    splits = {
        "train": (_encoded(cfg, "train", full, train_idx), full.labels[train_idx]),
        "test": (_encoded(cfg, "test", test, test_idx), test.labels[test_idx]),
    }
    meta = {
        "classes": list(full.classes),
        "channels": int(full.images.shape[-1]),
        "mean": mean,
        "std": std,
        "lt_index": record,
        "subset": {"whole": True} if whole else subset_fields(cfg),
        "source": {"dataset": cfg.dataset, "root": str(cfg.root)},
    }
    write_pack(Path(out), splits, meta)
    return {
        "pack": str(out),
        "bytes": Path(out).stat().st_size,
        "train": len(train_idx),
        "test": len(test_idx),
        "counts": record["counts"],
    }

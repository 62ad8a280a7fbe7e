"""From data.* to device-resident training and test tensors, the saved LT index and a validation split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longtail.data.class_names import align_labels
from longtail.data.config import DataConfig
from longtail.data.loader import to_device_tensor
from longtail.data.prepared import PreparedData
from longtail.data.source import DataSource
from longtail.data.stream_setup import prepare_streamed, streams
from longtail.data.subset import spread_indices, validation_indices
from longtail.errors import LongtailError


def prepare_data(cfg: DataConfig, device: torch.device) -> PreparedData:
    """Read (through the cache), subset, and move to ``device`` the training and test splits; or,
    when the run streams (:mod:`longtail.data.stream_setup`), list them as files."""
    source = DataSource.of(cfg)
    if streams(cfg, device):
        return prepare_streamed(source, device)
    full = source.arrays("train")
    test = source.arrays("test")
    test = replace(test, labels=align_labels(test.labels, test.classes, full.classes, "test"),
                   classes=list(full.classes))  # fmt: skip
    record = source.subset(full.labels, full.num_classes)
    train = full.subset(np.asarray(record["indices"], dtype=np.int64))
    mean, std = source.stats(full)
    if cfg.test_limit is not None:
        test = test.subset(spread_indices(len(test.labels), cfg.test_limit))
    return PreparedData(
        train_images=to_device_tensor(train.images, device),
        train_labels=torch.as_tensor(train.labels, dtype=torch.int64, device=device),
        test_images=to_device_tensor(test.images, device),
        test_labels=torch.as_tensor(test.labels, dtype=torch.int64, device=device),
        classes=list(full.classes),
        train_counts=list(record["counts"]),
        mean=list(mean),
        std=list(std),
        index_record=record,
    )


def replaying(cfg: DataConfig, index_file: str | Path) -> DataConfig:
    """``cfg`` reading exactly the subset saved in ``index_file`` (a run's lt_index.json: a resumed
    or re-evaluated run, a second stage), whatever the source."""
    return replace(cfg, index_file=str(index_file))


def describe_subset(cfg: DataConfig) -> dict[str, Any]:
    """``{"dataset", "counts", "total"}`` of the training index a config builds (``longtail data``)."""
    source = DataSource.of(cfg)
    record = source.stored_subset()
    if record is None:
        listed = source.files("train", check_files=False)
        if listed is not None:  # file names or a list: no image is decoded
            _, labels, classes = listed
        else:
            full = source.arrays("train")
            labels, classes = full.labels, list(full.classes)
        record = source.subset(labels, len(classes))
    return {"dataset": cfg.dataset, "counts": record["counts"], "total": record["total"]}


def prepare_validation(
    cfg: DataConfig, record: dict[str, Any], device: torch.device, per_class: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(uint8 images [V, C, H, W], int64 labels [V], indices [V]): the data's published validation
    split when it has one (:meth:`DataSource.has_published_val`; indices into it), else
    :func:`~longtail.data.subset.validation_indices` of the spare training images."""
    source = DataSource.of(cfg)
    if source.has_published_val():
        val = source.arrays("val")
        listed = source.files("train", check_files=False)
        train_classes = listed[2] if listed is not None else source.arrays("train").classes
        labels = align_labels(val.labels, val.classes, train_classes, "val")
        return (
            to_device_tensor(val.images, device),
            torch.as_tensor(labels, dtype=torch.int64, device=device),
            np.arange(len(val.labels), dtype=np.int64),
        )
    if not source.holds_whole_split():
        raise LongtailError(
            "a data pack holds only the long-tailed subset, so it has no spare images for a"
            " validation split: run this on the original dataset (data.dataset, data.root)"
        )
    full = source.arrays("train")
    used = np.asarray(record["indices"], dtype=np.int64)
    indices = validation_indices(full.labels, used, full.num_classes, per_class, seed)
    val = full.subset(indices)
    return (
        to_device_tensor(val.images, device),
        torch.as_tensor(val.labels, dtype=torch.int64, device=device),
        indices,
    )

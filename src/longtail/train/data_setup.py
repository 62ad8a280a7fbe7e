"""From a DataConfig to device-resident training and test tensors, and the saved LT index."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longtail.config import DataConfig
from longtail.data.arrays import ImageArrays
from longtail.data.class_names import align_labels
from longtail.data.loader import to_device_tensor
from longtail.data.lt_index import (
    counts_for_total,
    load_indices,
    long_tail_counts,
    long_tail_indices,
)
from longtail.data.pack import read_pack, read_pack_meta
from longtail.data.prepared import PreparedData
from longtail.data.registry import dataset_stats, list_files, load_split
from longtail.errors import LongtailError


def list_file(cfg: DataConfig, split: str) -> str | None:
    """The list a split is read from, when the recipe names one (data.train_list, ...)."""
    return {"train": cfg.train_list, "val": cfg.val_list, "test": cfg.test_list}.get(split)


def load_arrays(cfg: DataConfig, split: str) -> ImageArrays:
    """One full split, decoded (through the cache when ``cfg.cache_dir`` is set)."""
    if cfg.dataset == "pack":
        return read_pack(cfg.root, split)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else None
    return load_split(
        cfg.dataset,
        cfg.root,
        split,
        cache_dir=cache,
        channels=cfg.channels,
        list_file=list_file(cfg, split),
        image_size=cfg.image_size,
    )


def has_published_val(cfg: DataConfig) -> bool:
    """Whether the data has its own validation split: a named ``data.val_list``, or a split list
    root holding ``val.txt``."""
    if cfg.dataset != "split_list":
        return False
    return cfg.val_list is not None or (Path(cfg.root).expanduser() / "val.txt").is_file()


SUBSET_FIELDS = ("imbalance_ratio", "profile", "n_max", "total", "subset_rule", "subset_seed")


def subset_fields(cfg: DataConfig) -> dict[str, Any]:
    """The config fields that decide which training images a subset holds."""
    return {name: getattr(cfg, name) for name in SUBSET_FIELDS}


def is_source_pack(meta: dict[str, Any]) -> bool:
    """Whether a pack holds its source's WHOLE training split in source order (``pack --whole``).

    Such a pack stands in for the dataset itself: a run subsets it by its own ``data.*`` fields
    and gets the same images as from the source, and the balanced probe can use all of it.
    """
    return bool(meta.get("subset", {}).get("whole"))


def _pack_record(cfg: DataConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """A pack's stored LT record, checked against the subset the recipe asks for."""
    stored = meta.get("subset", {})
    for name, value in subset_fields(cfg).items():
        if name in stored and stored[name] != value:
            raise LongtailError(
                f"data pack {cfg.root} holds a subset with data.{name}={stored[name]}, the recipe"
                f" asks for {value}: rebuild the pack with 'longtail pack' from this recipe"
            )
    record = dict(meta["lt_index"])
    record["source_indices"] = record["indices"]
    record["indices"] = list(range(record["total"]))  # the pack's train split IS the subset
    return record


def subset_counts(cfg: DataConfig, full_counts: list[int]) -> list[int]:
    """Per-class counts of the long-tailed subset the config asks for."""
    num_classes = len(full_counts)
    if cfg.total is not None:
        return counts_for_total(
            cfg.total, num_classes, cfg.imbalance_ratio, cfg.profile, available=full_counts
        )
    n_max = cfg.n_max if cfg.n_max is not None else max(full_counts)
    return long_tail_counts(n_max, num_classes, cfg.imbalance_ratio, cfg.profile)


def choose_indices(cfg: DataConfig, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """The LT subset as a record: indices, counts, and how they were chosen (lt_index.json)."""
    if cfg.index_file:
        indices, record = load_indices(Path(cfg.index_file))
        if indices.size == 0 or indices.min() < 0 or indices.max() >= len(labels):
            raise LongtailError(
                f"data.index_file {cfg.index_file} has indices outside the {len(labels)} training"
                " images: it was saved for another dataset; rebuild it or fix data.root"
            )
        saved = record.get("counts")
        found = np.bincount(labels[indices], minlength=num_classes).tolist()
        if saved is not None and list(saved) != found:
            raise LongtailError(
                f"data.index_file {cfg.index_file} was made on other data (class counts differ):"
                " point data.root at the data it was saved for"
            )
    elif cfg.subset_rule == "none":  # the split as published: every image, in source order
        indices = np.arange(len(labels), dtype=np.int64)
        record = {"dataset": cfg.dataset, "rule": "none", "list": cfg.train_list}
    else:
        full_counts = np.bincount(labels, minlength=num_classes).tolist()
        counts = subset_counts(cfg, full_counts)
        indices = long_tail_indices(labels, counts, seed=cfg.subset_seed, rule=cfg.subset_rule)
        record = {
            "dataset": cfg.dataset,
            "ratio": cfg.imbalance_ratio,
            "profile": cfg.profile,
            "seed": cfg.subset_seed,
            "rule": cfg.subset_rule,
        }
    counts = np.bincount(labels[indices], minlength=num_classes).tolist()
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        raise LongtailError(
            f"class {empty[0]} has zero training images after subsetting: lower"
            " data.imbalance_ratio or raise data.n_max / data.total"
        )
    record.update({"indices": indices.tolist(), "counts": counts, "total": int(len(indices))})
    return record


def prepare_data(cfg: DataConfig, device: torch.device) -> PreparedData:
    """Read (through the cache), subset, and move to ``device`` the training and test splits; or,
    when the run streams (:mod:`longtail.train.stream_setup`), list them as files."""
    from longtail.train.stream_setup import prepare_streamed, streams

    if streams(cfg, device):
        return prepare_streamed(cfg, device)
    full = load_arrays(cfg, "train")
    test = load_arrays(cfg, "test")
    test = replace(test, labels=align_labels(test.labels, test.classes, full.classes, "test"),
                   classes=list(full.classes))  # fmt: skip
    meta = read_pack_meta(cfg.root) if cfg.dataset == "pack" else None
    if meta is not None and not is_source_pack(meta):  # the pack's train split IS the subset
        record, train = _pack_record(cfg, meta), full
    else:  # a dataset, or a whole-split pack in source order: subset it as the source
        record = choose_indices(cfg, full.labels, full.num_classes)
        train = full.subset(np.asarray(record["indices"], dtype=np.int64))
    # a pack stores the statistics of its source's full training split
    mean, std = (meta["mean"], meta["std"]) if meta is not None else dataset_stats(full)
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


def spread_indices(size: int, limit: int) -> np.ndarray:
    """``min(limit, size)`` indices spread evenly over ``range(size)`` (every size/limit-th).

    A class-sorted split (an ImageFolder tree) keeps every class in proportion, which the first N
    images would not.
    """
    n = min(limit, size)
    return np.unique(np.floor(np.arange(n) * (size / n)).astype(np.int64))


def describe_subset(cfg: DataConfig) -> dict[str, Any]:
    """``{"dataset", "counts", "total"}`` of the training index a config builds (``longtail data``)."""
    if cfg.dataset == "pack" and not is_source_pack(read_pack_meta(cfg.root)):
        record = _pack_record(cfg, read_pack_meta(cfg.root))
        return {"dataset": cfg.dataset, "counts": record["counts"], "total": record["total"]}
    listed = list_files(cfg.dataset, cfg.root, "train", list_file(cfg, "train"), check_files=False)
    if listed is not None:  # file names or a list: no image is decoded
        _, labels, classes = listed
    else:
        full = load_arrays(cfg, "train")
        labels, classes = full.labels, list(full.classes)
    record = choose_indices(cfg, labels, len(classes))
    return {"dataset": cfg.dataset, "counts": record["counts"], "total": record["total"]}


def validation_indices(
    labels: np.ndarray, used: np.ndarray, num_classes: int, per_class: int, seed: int
) -> np.ndarray:
    """A balanced validation split of the training images NOT in the long-tailed subset.

    Every class gets the same count, ``min(per_class, fewest spare images of any class)``, drawn
    without replacement by a seeded RandomState; indices (into the full training split) are sorted
    per class, classes in order. Model choices (tau-norm's tau) are made here, never on the test set.
    """
    spare = np.ones(len(labels), dtype=bool)
    spare[used] = False
    pools = [np.flatnonzero(spare & (labels == c)) for c in range(num_classes)]
    n = min(per_class, *(len(p) for p in pools))
    if n == 0:
        empty = next(c for c, p in enumerate(pools) if len(p) == 0)
        raise LongtailError(
            f"class {empty} has no training images outside the long-tailed subset, so no balanced"
            " validation split exists: name a published one (data.dataset=split_list with"
            " data.val_list), or train stage 1 with data.n_max below the largest class size"
        )
    rng = np.random.RandomState(seed)
    return np.concatenate([np.sort(rng.choice(p, n, replace=False)) for p in pools])


def prepare_validation(
    cfg: DataConfig, record: dict[str, Any], device: torch.device, per_class: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(uint8 images [V, C, H, W], int64 labels [V], indices [V]): the data's published validation
    split when it has one (:func:`has_published_val`; indices into it), else
    :func:`validation_indices` of the spare training images."""
    if has_published_val(cfg):
        val = load_arrays(cfg, "val")
        listed = list_files(cfg.dataset, cfg.root, "train", list_file(cfg, "train"),
                            check_files=False)  # fmt: skip
        train_classes = listed[2] if listed is not None else load_arrays(cfg, "train").classes
        return (
            to_device_tensor(val.images, device),
            torch.as_tensor(
                align_labels(val.labels, val.classes, train_classes, "val"),
                dtype=torch.int64,
                device=device,
            ),  # fmt: skip
            np.arange(len(val.labels), dtype=np.int64),
        )
    if cfg.dataset == "pack" and not is_source_pack(read_pack_meta(cfg.root)):
        raise LongtailError(
            "a data pack holds only the long-tailed subset, so it has no spare images for a"
            " validation split: run this on the original dataset (data.dataset, data.root)"
        )
    full = load_arrays(cfg, "train")
    used = np.asarray(record["indices"], dtype=np.int64)
    indices = validation_indices(full.labels, used, full.num_classes, per_class, seed)
    val = full.subset(indices)
    return (
        to_device_tensor(val.images, device),
        torch.as_tensor(val.labels, dtype=torch.int64, device=device),
        indices,
    )

"""The representation evaluation every run ends with: balanced, long-tailed and OOD probes.

Issue 7: every run reports the balancedness of what it learned. After training, the backbone's
pooled features (the classifier and any projection head are dropped) are probed three ways:

* ``balanced``: the dataset's full training split, every class equally (capped by
  ``probe.balanced_per_class``): Kang et al.'s and Liu et al.'s protocol. Its per-class accuracy,
  grouped by each class's count in the PRE-TRAINING subset, gives the balancedness numbers;
* ``long_tailed``: the run's own long-tailed subset (``probe.long_tailed``);
* ``ood``: another dataset (``probe.ood``), resized to the training images' size and channels
  and normalised with the pre-training data's mean and std, as the backbone expects.

Each reports linear-probe and kNN top-1 on the matching test split. The backbone is checked to be
bit-identical afterwards (parameters and BatchNorm statistics).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from longtail.config import Config
from longtail.data.arrays import ImageArrays
from longtail.data.config import DataConfig
from longtail.data.loader import to_device_tensor
from longtail.data.prepared import PreparedData, input_transform
from longtail.data.source import DataSource
from longtail.data.stream import FileImages
from longtail.errors import LongtailError
from longtail.eval.config import ProbeConfig
from longtail.eval.groups import summarize
from longtail.eval.knn import knn_predict
from longtail.eval.metrics import confusion_matrix
from longtail.eval.ood import balanced_indices, match_format
from longtail.eval.plots import plot_per_class_accuracy
from longtail.eval.probe import assert_unchanged, extract_features, snapshot
from longtail.eval.probe_budget import long_tailed_subset, per_class_cap, probe_images
from longtail.eval.representation import (
    ProbeSet,
    ProbeSettings,
    backbone_of,
    evaluate_representation,
)
from longtail.protocol import shortened
from longtail.run_sections import TrainConfig

HEADLINE = ("probe_top1", "probe_knn_top1", "few_many_ratio", "slope", "cv")


def probe_run(
    model: nn.Module,
    data: PreparedData,
    cfg: Config,
    device: torch.device,
    plot: Path | None,
    length: str = "",
    trained_images: int | None = None,
) -> dict[str, Any]:
    """``{"probe": {...per probe set...}, "probe_top1", ..., "ood_probe_top1"}`` for final.json.

    ``length``: the run's length for the plot's title (e.g. "20 epochs, shortened");
    ``trained_images``: how many images the run trained on, which sizes a shortened run's probe
    sets (:mod:`longtail.eval.probe_budget`; None: the configured sets). Each probe prints a line
    on stderr when ``train.progress`` is on.
    """
    p = cfg.probe
    budget = None
    if trained_images is not None and p.size == "auto" and shortened(cfg):
        budget = probe_images(trained_images)
        _say(
            cfg.train,
            f"probe: sized to this shortened run, at most ~{budget} images a set"
            " (probe.size=full probes the recipe's sets)",
        )
    backbone = backbone_of(model)
    before = snapshot(backbone)
    transform = input_transform(cfg.train.channels_last, data, device)
    settings = ProbeSettings(
        batch_size=cfg.eval.batch_size,
        iterations=p.iterations,
        weight_decay=p.weight_decay,
        knn_k=p.knn_k,
        knn_temperature=p.knn_temperature,
        many_threshold=cfg.eval.many_threshold,
        few_threshold=cfg.eval.few_threshold,
    )
    test_feats = extract_features(
        backbone, data.test_images, batch_size=cfg.eval.batch_size, transform=transform
    )
    probes: dict[str, Any] = {}

    def probe(name: str, probe_set: ProbeSet, counts: list[int] | None) -> dict[str, Any]:
        """One probe set; ``counts`` (the pre-training counts) for in-domain sets, which share
        the run's test split (its features extracted once), None for the OOD set."""
        size = int(probe_set.train_labels.shape[0])
        _say(cfg.train, f"probe: {name} set, {size} images ...")
        t0 = time.perf_counter()
        result = evaluate_representation(backbone, probe_set, transform=transform,
                                         settings=settings, pretrain_counts=counts,
                                         test_feats=test_feats if counts is not None else None)  # fmt: skip
        _say(
            cfg.train,
            f"probe: {name}: linear {result['probe_top1']:.2f}%, kNN"
            f" {result['probe_knn_top1']:.2f}% ({time.perf_counter() - t0:.1f} s)",
        )
        return result

    if not DataSource.of(cfg.data).holds_whole_split():
        # a subset pack has no balanced probe set: the headline keys stay null (pack --whole has one)
        probes["balanced"] = None
    else:
        cap = per_class_cap(budget, data.num_classes, p.balanced_per_class)
        probes["balanced"] = probe("balanced", _balanced_set(cfg.data, data, device, cap),
                                   data.train_counts)  # fmt: skip
    if p.long_tailed:
        keep = long_tailed_subset(data.train_labels.cpu().numpy(), data.num_classes, budget)
        lt = ProbeSet(_rows(data.train_images, keep), data.train_labels[torch.as_tensor(keep)],
                      data.test_images, data.test_labels, data.num_classes)  # fmt: skip
        probes["long_tailed"] = probe("long-tailed", lt, data.train_counts)
    if p.ood is not None:
        probes["ood"] = probe("OOD", _ood_set(cfg.probe, cfg.data, data, device, budget), None)
    assert_unchanged(backbone, before)
    headline = probes["balanced"] or {}  # never silently the long-tailed probe
    record: dict[str, Any] = {"probe": probes}
    record.update({key: headline.get(key) for key in HEADLINE})
    record["ood_probe_top1"] = probes["ood"]["probe_top1"] if "ood" in probes else None
    record["probe_sized_to_run"] = budget is not None  # the sets cut to a shortened run's size
    shown = probes["balanced"] or probes.get("long_tailed")
    if plot is not None and shown:
        which = "balanced" if probes["balanced"] else "long-tailed"
        plot_per_class_accuracy(
            shown["per_class_acc"],
            data.train_counts,
            plot,
            title=f"{cfg.name}: {which} linear probe {shown['probe_top1']:.2f}% (frozen features"
            + (f", {length})" if length else ")"),
            class_names=data.classes,
            many_threshold=cfg.eval.many_threshold,
            few_threshold=cfg.eval.few_threshold,
        )
    return record


def knn_summary(
    model: nn.Module, data: PreparedData, cfg: Config, device: torch.device
) -> dict[str, Any]:
    """Test accuracies of a kNN classifier on the frozen backbone, the long-tailed subset as its bank.

    The per-epoch evaluation of representation-learning runs (SSL, SupCon, KCL stage 1), whose own
    linear classifier is never trained; same keys as a classifier's evaluation (``summarize``),
    written ``knn_``-prefixed by the epoch loop (``eval/monitor.py``).
    """
    backbone = backbone_of(model)
    transform = input_transform(cfg.train.channels_last, data, device)
    bank = extract_features(backbone, data.train_images, batch_size=cfg.eval.batch_size,
                            transform=transform)  # fmt: skip
    queries = extract_features(backbone, data.test_images, batch_size=cfg.eval.batch_size,
                               transform=transform)  # fmt: skip
    preds = knn_predict(bank, data.train_labels, queries, num_classes=data.num_classes,
                        k=cfg.probe.knn_k, temperature=cfg.probe.knn_temperature)  # fmt: skip
    cm = confusion_matrix(preds, data.test_labels, data.num_classes)
    return summarize(cm, data.train_counts, many_threshold=cfg.eval.many_threshold,
                     few_threshold=cfg.eval.few_threshold)  # fmt: skip


def _say(train: TrainConfig, line: str) -> None:
    """A progress line on stderr when ``train.progress`` is on (rank 0 alone runs the probes)."""
    if train.progress:
        print(line, file=sys.stderr, flush=True)


def _rows(images: torch.Tensor | FileImages, keep: np.ndarray) -> torch.Tensor | FileImages:
    """``images`` restricted to the rows ``keep`` (all of them: the same object, no copy)."""
    if len(keep) == images.shape[0]:
        return images
    if isinstance(images, FileImages):
        return images.subset([int(i) for i in keep])
    return images[torch.as_tensor(keep, device=images.device)]


def _balanced_set(
    data_cfg: DataConfig, data: PreparedData, device: torch.device, per_class: int | None
) -> ProbeSet:
    """The balanced probe set: up to ``per_class`` images of every class of the full split that
    ``data_cfg`` (the run's ``data.*``) reads; ``data`` gives its test split and format."""
    if isinstance(data.train_images, FileImages):  # streamed: the balanced files, undecoded
        listed = DataSource.of(data_cfg).files("train")
        assert listed is not None  # a streamed run reads files
        paths, labels, _ = listed
        keep = balanced_indices(labels, data.num_classes, per_class, seed=0)
        return ProbeSet(
            data.train_images.with_paths([paths[i] for i in keep]),
            torch.as_tensor(labels[keep], dtype=torch.int64, device=device),
            data.test_images,
            data.test_labels,
            data.num_classes,
        )  # fmt: skip
    full = DataSource.of(data_cfg).arrays("train")
    keep = balanced_indices(full.labels, data.num_classes, per_class, seed=0)
    probe = full.subset(keep)
    return ProbeSet(
        to_device_tensor(probe.images, device),
        torch.as_tensor(probe.labels, dtype=torch.int64, device=device),
        data.test_images,
        data.test_labels,
        data.num_classes,
    )


def check_probe_data(probe: ProbeConfig, data_cfg: DataConfig) -> None:
    """Read the OOD probe's splits now (cached with ``data_cfg.cache_dir``, the run's
    ``data.cache_dir``), so a bad ``probe.ood_root`` stops a run before it trains."""
    if probe.enabled and probe.ood is not None:
        for split in ("train", "test"):
            _ood_split(probe, data_cfg, split)


def _ood_split(probe: ProbeConfig, data_cfg: DataConfig, split: str) -> ImageArrays:
    """``split`` of ``probe.ood`` from ``probe.ood_root``, cached with ``data_cfg.cache_dir``."""
    assert probe.ood is not None
    # a dataset, or a pack (e.g. `longtail pack recipes/demo.yaml fmnist.npz --whole`)
    source = DataConfig(dataset=probe.ood, root=probe.ood_root, cache_dir=data_cfg.cache_dir)
    try:
        return DataSource.of(source).arrays(split)
    except LongtailError as err:
        raise LongtailError(
            f"probe.ood={probe.ood} cannot be read from probe.ood_root={probe.ood_root} ({err}):"
            " fix probe.ood_root, fetch the data (`make data` for Fashion-MNIST) or drop probe.ood"
        ) from None


def _ood_set(
    probe: ProbeConfig,
    data_cfg: DataConfig,
    data: PreparedData,
    device: torch.device,
    budget: int | None,
) -> ProbeSet:
    """The OOD probe set: its training images (``probe.ood_per_class`` a class, lowered to a
    shortened run's ``budget``), and its test split, both read by :func:`_ood_split` and matched
    to ``data``'s image size and channels."""
    assert probe.ood is not None
    size = (int(data.train_images.shape[2]), int(data.train_images.shape[3]))
    splits = []
    for split in ("train", "test"):
        arrays = _ood_split(probe, data_cfg, split)
        if split == "train":
            num_classes = arrays.num_classes
            per_class = per_class_cap(budget, num_classes, probe.ood_per_class)
            arrays = arrays.subset(balanced_indices(arrays.labels, num_classes, per_class, 0))
        images = match_format(to_device_tensor(arrays.images, device), data.in_chans, size)
        splits += [images, torch.as_tensor(np.asarray(arrays.labels), dtype=torch.int64,
                                           device=device)]  # fmt: skip
    return ProbeSet(splits[0], splits[1], splits[2], splits[3], num_classes)

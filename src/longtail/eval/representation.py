"""One frozen-representation evaluation: features once, then a linear probe, kNN and balancedness."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from longtail.data.stream import FileImages
from longtail.eval.balancedness import balancedness
from longtail.eval.groups import summarize
from longtail.eval.knn import knn_predict
from longtail.eval.metrics import confusion_matrix, top1
from longtail.eval.probe import extract_features, linear_probe


@dataclass
class ProbeSet:
    """A labelled training split for the probe and a test split, uint8 ``[N, C, H, W]`` on a device."""

    train_images: Tensor | FileImages
    train_labels: Tensor  # int64 [N]
    test_images: Tensor | FileImages
    test_labels: Tensor  # int64 [M]
    num_classes: int


@dataclass
class ProbeSettings:
    """How the probe and the kNN classifier are fitted (ProbeConfig's numbers)."""

    batch_size: int = 1024
    iterations: int = 100
    weight_decay: float = 1e-4
    knn_k: int = 200
    knn_temperature: float = 0.1
    many_threshold: int = 100  # class groups by pre-training count (eval.many_threshold)
    few_threshold: int = 20


def backbone_of(model: nn.Module) -> nn.Module:
    """The representation a run learned: ``model.backbone`` for wrapped nets (hybrid, KCL, SSL)."""
    inner = getattr(model, "backbone", None)
    return inner if isinstance(inner, nn.Module) else model


def evaluate_representation(
    backbone: nn.Module,
    probe: ProbeSet,
    *,
    transform: Callable[[Tensor], Tensor],
    settings: ProbeSettings,
    pretrain_counts: Sequence[int] | None = None,
    test_feats: Tensor | None = None,
) -> dict[str, Any]:
    """Linear-probe and kNN top-1 of the frozen ``backbone`` on ``probe`` (percent).

    The probe is multinomial logistic regression on standardised pooled features
    (:func:`~longtail.eval.probe.linear_probe`, unweighted: a long-tailed probe set shows its own
    bias); kNN is cosine, ``exp(s / tau)``-weighted over ``knn_k`` neighbours. With
    ``pretrain_counts`` (length ``num_classes``) the per-class probe accuracy also gives
    balancedness (few/many or tail/head ratio, slope, CV; :mod:`longtail.eval.balancedness`) and the
    group accuracies by pre-training count. ``test_feats`` [M, F] reuses features already extracted
    from the same test split. The backbone's parameters, buffers and modes are unchanged afterwards.
    """

    def extract(images: Tensor | FileImages) -> Tensor:
        return extract_features(
            backbone, images, batch_size=settings.batch_size, transform=transform
        )

    train_feats = extract(probe.train_images)
    if test_feats is None:
        test_feats = extract(probe.test_images)
    result = linear_probe(
        train_feats,
        probe.train_labels,
        test_feats,
        probe.test_labels,
        num_classes=probe.num_classes,
        epochs=settings.iterations,
        weight_decay=settings.weight_decay,
    )
    knn = knn_predict(
        train_feats,
        probe.train_labels,
        test_feats,
        num_classes=probe.num_classes,
        k=settings.knn_k,
        temperature=settings.knn_temperature,
    )
    knn_cm = confusion_matrix(knn, probe.test_labels.long(), probe.num_classes)
    per_class: Tensor = result["per_class_acc"]
    record: dict[str, Any] = {
        "probe_top1": round(float(result["top1"]), 4),
        "probe_knn_top1": round(float(top1(knn_cm)) * 100.0, 4),
        "train_size": int(probe.train_labels.shape[0]),
        "test_size": int(probe.test_labels.shape[0]),
        "per_class_acc": [None if v != v else round(float(v), 4) for v in per_class.tolist()],
    }
    if pretrain_counts is not None:
        thresholds = (settings.many_threshold, settings.few_threshold)
        record.update(balancedness(per_class, pretrain_counts, *thresholds))
        cm = confusion_matrix(result["preds"], probe.test_labels.long(), probe.num_classes)
        groups = summarize(cm, pretrain_counts, many_threshold=thresholds[0],
                           few_threshold=thresholds[1])  # fmt: skip
        record["groups"] = {
            key: groups[key]
            for key in ("many", "medium", "few", "head", "middle", "tail")
            if key in groups
        }
    return record

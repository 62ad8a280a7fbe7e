"""Batched prediction over a device-resident image tensor, and the evaluation that summarises it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from longtail.data.stream import FileImages, image_batches
from longtail.errors import LongtailError
from longtail.eval.groups import summarize
from longtail.eval.metrics import confusion_matrix


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: Tensor | FileImages,
    *,
    batch_size: int,
    transform: Callable[[Tensor], Tensor],
    autocast_dtype: torch.dtype | None = None,
) -> Tensor:
    """Predicted class ids ``argmax_k model(transform(x))_k`` for every image.

    Args:
        model: maps a transformed batch ``[B, ...]`` to logits ``[B, K]``.
        images: uint8 ``[N, C, H, W]``, already on the model's device (nothing is moved here),
            or :class:`~longtail.data.stream.FileImages` decoded batch by batch to that device.
        batch_size: images per forward pass.
        transform: maps a uint8 batch to the model input (e.g. to float and normalise).
        autocast_dtype: run the forward under ``torch.autocast`` in this dtype (e.g. ``bfloat16``);
            ``None`` runs in the model's own precision.

    Returns:
        int64 ``[N]`` on ``images``' device.

    The model runs in eval mode; afterwards every submodule gets back its own previous mode, so a
    frozen backbone kept in eval mode inside a training head stays in eval mode.
    """
    if batch_size < 1:
        raise LongtailError(f"batch_size is {batch_size}: set the evaluation batch size to >= 1")
    previous_modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        preds = []
        for uint8 in image_batches(images, batch_size):
            batch = transform(uint8)
            with torch.autocast(
                device_type=images.device.type,
                dtype=autocast_dtype,
                enabled=autocast_dtype is not None,
            ):
                logits = model(batch)
            if not isinstance(logits, Tensor) or logits.ndim != 2:
                shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise LongtailError(
                    f"model returned {shape} for a batch of {batch.shape[0]}: predict needs "
                    "logits [batch, classes]; wrap the model so forward returns only the logits"
                )
            preds.append(logits.argmax(dim=1))
        if not preds:
            return torch.empty(0, dtype=torch.int64, device=images.device)
        return torch.cat(preds)
    finally:
        for module, training in previous_modes:
            module.training = training


def evaluate(
    model: nn.Module,
    images: Tensor | FileImages,
    labels: Tensor,
    *,
    num_classes: int,
    train_counts: Sequence[int],
    batch_size: int,
    transform: Callable[[Tensor], Tensor],
    autocast_dtype: torch.dtype | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> dict[str, Any]:
    """Predict every image, build the confusion matrix and summarise it.

    Args:
        images: uint8 ``[N, C, H, W]`` on the model's device.
        labels: integer ``[N]`` on the same device.
        num_classes: C, given explicitly (the test labels may miss classes).
        train_counts: training images per class, length C (defines many/medium/few and head/tail).
        Other arguments as in :func:`predict` and :func:`longtail.eval.groups.summarize`.

    Returns:
        The :func:`longtail.eval.groups.summarize` dict (accuracies in percent).
    """
    if len(train_counts) != num_classes:
        raise LongtailError(
            f"train_counts has {len(train_counts)} entries but num_classes is {num_classes}: "
            "pass one training count per class"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise LongtailError(
            f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}: "
            "pass one label per image, shape [N]"
        )
    if labels.numel() == 0:
        raise LongtailError("the evaluation set has 0 images: check the test split")
    low, high = (int(v) for v in torch.aminmax(labels))
    if low < 0 or high >= num_classes:
        raise LongtailError(
            f"labels span [{low}, {high}] but num_classes is {num_classes}: "
            "set num_classes to the dataset's class count"
        )
    preds = predict(
        model, images, batch_size=batch_size, transform=transform, autocast_dtype=autocast_dtype
    )
    cm = confusion_matrix(preds, labels, num_classes)
    dropped = labels.shape[0] - int(cm.sum())
    if dropped:
        raise LongtailError(
            f"the model predicted class ids >= num_classes={num_classes} for {dropped} images: "
            "its head has more outputs than the dataset has classes; match the two"
        )
    return summarize(cm, train_counts, many_threshold=many_threshold, few_threshold=few_threshold)

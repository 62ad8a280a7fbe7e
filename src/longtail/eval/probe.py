"""Linear probe on frozen features (L-BFGS logistic regression) and MoCo v3's unchanged check."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.data.stream import FileImages, image_batches
from longtail.errors import LongtailError
from longtail.eval.metrics import confusion_matrix, per_class_accuracy, top1


def extract_features(
    backbone: nn.Module,
    images: Tensor | FileImages,
    *,
    batch_size: int,
    transform: Callable[[Tensor], Tensor],
) -> Tensor:
    """Pooled features ``forward_head(forward_features(transform(x)), pre_logits=True)``.

    ``backbone`` follows :class:`longtail.models.backbone.Backbone`; ``images`` are uint8
    ``[N, C, H, W]`` on its device (or files decoded to it, :class:`FileImages`); ``transform`` maps a uint8 batch to the model input (no random
    augmentation). Returns float32 ``[N, F]``, an ordinary tensor (usable under autograd). Runs under ``torch.inference_mode`` in eval mode (BatchNorm statistics untouched); afterwards
    every submodule gets back its own previous mode.
    """
    if batch_size < 1 or len(images.shape) != 4 or images.shape[0] == 0:
        raise LongtailError(
            f"batch_size={batch_size}, images {tuple(images.shape)}: need >= 1 and [N>0, C, H, W]"
        )
    if not (hasattr(backbone, "forward_features") and hasattr(backbone, "forward_head")):
        raise LongtailError(f"{type(backbone).__name__} lacks forward_head: pass a Backbone")
    net: Any = backbone  # the Backbone interface, typed loosely so any look-alike works
    previous_modes = [(module, module.training) for module in backbone.modules()]
    backbone.eval()
    try:
        with torch.inference_mode():
            chunks = [
                net.forward_head(net.forward_features(transform(batch)), True)
                for batch in image_batches(images, batch_size)
            ]
            feats = torch.cat(chunks).float()
    finally:
        for module, training in previous_modes:
            module.training = training
    return feats.clone()  # outside inference mode: an ordinary tensor autograd may save


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    epochs: int = 200,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    balanced: bool = False,
) -> dict[str, Any]:
    """Multinomial logistic regression on standardised frozen features, full-batch L-BFGS.

    Features are standardised with the training mean and (population) std, ``z = (x - mu) / s``
    (``s`` floored at 1e-8 for constant dimensions). With weights ``w_i`` (1, or ``1 / n_{y_i}``
    when ``balanced``, so every class present in training counts equally) the objective is::

        L(W, b) = sum_i w_i CE(W z_i + b, y_i) / sum_i w_i  +  weight_decay / 2 * ||W||_F^2

    with the bias unpenalised. This is sklearn's ``LogisticRegression(C=1 / (weight_decay * N))``
    (``class_weight="balanced"`` when ``balanced``, all classes present) up to a constant factor.

    Features are ``[N, F]`` / ``[M, F]`` on one device, labels integer ``[N]`` / ``[M]`` in
    ``[0, num_classes)``; K = ``num_classes`` is explicit (classes may be absent from either split).
    ``epochs`` is the number of L-BFGS iterations (one full pass each, plus line-search passes);
    ``lr`` the step before the strong-Wolfe line search. Returns ``top1`` and ``per_class_acc``
    (float64 ``[K]``, NaN for classes absent from the test set) in percent, ``preds`` int64 ``[M]``,
    ``weight`` ``[K, F]`` / ``bias`` ``[K]`` on standardised features, ``mean`` / ``std`` ``[F]``
    and ``loss``, the final objective.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise LongtailError(
            f"features {tuple(train_feats.shape)} / {tuple(test_feats.shape)}: pass [N, F] and [M, F]"
        )
    if train_labels.shape != train_feats.shape[:1] or test_labels.shape != test_feats.shape[:1]:
        raise LongtailError("labels must be [N] and [M], one per feature row: check the splits")
    if train_feats.shape[0] == 0 or test_feats.shape[0] == 0 or epochs < 1 or weight_decay < 0:
        raise LongtailError(
            f"N={train_feats.shape[0]}, M={test_feats.shape[0]}, epochs={epochs}, "
            f"weight_decay={weight_decay}: need non-empty splits, epochs >= 1, weight_decay >= 0"
        )
    for name, y in (("train", train_labels), ("test", test_labels)):
        low, high = (int(v) for v in torch.aminmax(y))
        if low < 0 or high >= num_classes:
            raise LongtailError(
                f"{name} labels span [{low}, {high}], num_classes={num_classes}: fix it"
            )
    x, y = train_feats.detach().float(), train_labels.long()
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-8)
    z = (x - mean) / std
    counts = torch.bincount(y, minlength=num_classes).to(z.dtype)
    w = 1.0 / counts[y] if balanced else torch.ones_like(y, dtype=z.dtype)
    w = w / w.sum()
    weight = torch.zeros(num_classes, z.shape[1], device=z.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=lr, max_iter=epochs, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")  # fmt: skip

    def closure() -> Tensor:
        opt.zero_grad()
        ce = F.cross_entropy(z @ weight.T + bias, y, reduction="none")
        loss = (w * ce).sum() + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)
        final_loss = float(closure().detach())
    weight, bias = weight.detach(), bias.detach()
    preds = (((test_feats.detach().float() - mean) / std) @ weight.T + bias).argmax(dim=1)
    cm = confusion_matrix(preds, test_labels.long(), num_classes)
    per_class = per_class_accuracy(cm) * 100.0
    return {"top1": top1(cm) * 100.0, "per_class_acc": per_class, "preds": preds, "weight": weight,
            "bias": bias, "mean": mean, "std": std, "loss": final_loss}  # fmt: skip


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of every parameter and buffer, the reference for :func:`assert_unchanged`."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def assert_unchanged(model: nn.Module, reference_state_dict: Mapping[str, Tensor]) -> None:
    """Raise if any parameter or buffer (BatchNorm running stats included) differs bit-wise.

    MoCo v3's ``sanity_check`` after a linear probe: a frozen backbone must come out identical.
    Take the reference with :func:`snapshot` (a plain ``state_dict()`` aliases the live tensors).
    """
    current = model.state_dict()
    if diff := sorted(set(current) ^ set(reference_state_dict)):
        raise LongtailError(f"state dict keys differ from the reference ({diff[:5]}): wrong model?")
    for name, tensor in current.items():
        ref = reference_state_dict[name].to(tensor.device)
        if tensor.shape != ref.shape or not torch.equal(tensor, ref):
            raise LongtailError(
                f"frozen backbone changed at {name!r}: freeze it (requires_grad=False, eval mode)"
            )

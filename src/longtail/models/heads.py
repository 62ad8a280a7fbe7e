"""Classifier heads (linear, cosine), tau-normalisation, and the projection MLP.

Every head maps pooled features ``[B, D]`` to ``[B, out]``. :func:`build_classifier` picks one by
name, which is how models and ``reset_classifier`` build their ``fc``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.runtime import at_least_fp32

CLASSIFIER_KINDS: tuple[str, ...] = ("linear", "cosine")


class NormedLinear(nn.Module):
    """Cosine classifier: ``logits[b, c] = cos(x_b, w_c) = <x_b, w_c> / (||x_b|| ||w_c||)``.

    The normalised classifier of LDAM-DRW's CIFAR code (Cao et al. 2019, ``NormedLinear``). Its
    outputs lie in [-1, 1] and carry no scale: the scale ``s`` (30 in LDAM) is applied by the loss
    (``LDAMLoss`` multiplies the margin-adjusted cosines by ``s`` before the softmax), so the same
    head works under any loss that expects raw cosines.

    Unlike LDAM's code, which stores the weight as ``[in, out]``, the weight here is ``[out, in]``
    (one row per class, as ``nn.Linear``), so :func:`tau_normalize` and checkpoints treat every head
    alike. There is no bias: a bias would break the [-1, 1] range.

    Shapes: input ``[B, in_features]`` -> output ``[B, out_features]``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # LDAM's init: uniform in [-1, 1], then each class vector rescaled to unit norm.
        with torch.no_grad():
            self.weight.uniform_(-1.0, 1.0)
            self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, x: Tensor) -> Tensor:
        # float32 even under autocast: LDAM multiplies these cosines by s = 30, and bf16's
        # rounding (~4e-3) would then be ~0.1 logit of noise against margins of a few logits
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(
                F.normalize(at_least_fp32(x), dim=1), F.normalize(at_least_fp32(self.weight), dim=1)
            )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def build_classifier(kind: str, in_features: int, num_classes: int) -> nn.Module:
    """A fresh classifier ``[B, in_features] -> [B, num_classes]``; ``num_classes=0``: Identity.

    ``kind``: ``"linear"`` (``nn.Linear`` with bias) or ``"cosine"`` (:class:`NormedLinear`).
    """
    if kind not in CLASSIFIER_KINDS:
        raise LongtailError(
            f"unknown classifier kind {kind!r}: use one of {', '.join(CLASSIFIER_KINDS)}"
        )
    if num_classes < 0:
        raise LongtailError(
            f"num_classes={num_classes} is negative: use a positive class count, "
            "or 0 for a model that returns pooled features"
        )
    if num_classes == 0:
        return nn.Identity()
    if kind == "cosine":
        return NormedLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes)


def tau_normalize(weight: Tensor, tau: float) -> Tensor:
    """Divide each class row by its norm to the power tau: ``w_c / ||w_c||^tau``.

    The tau-normalized classifier of Kang et al. 2020, "Decoupling Representation and Classifier
    for Long-Tailed Recognition": tau = 1 gives unit rows, tau = 0 leaves the weights unchanged,
    values in between partly undo the larger norms that head classes' rows grow. A row is
    ``weight[c]`` flattened; an all-zero row stays zero. What to do with a bias is the caller's
    choice (this function only sees the weight).

    Shapes: ``weight [C, ...]`` -> same shape. Returns a new tensor; differentiable in ``weight``.
    """
    if weight.dim() < 2:
        raise LongtailError(
            f"tau_normalize needs a weight with one row per class ([C, D]), got shape "
            f"{tuple(weight.shape)}: pass the classifier's weight matrix"
        )
    norms = weight.flatten(1).norm(dim=1)
    # A zero row would give 0 / 0; dividing it by 1 keeps it zero instead of NaN.
    scale = torch.where(norms > 0, norms.pow(tau), torch.ones_like(norms))
    scale = scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return weight / scale


class ProjectionHead(nn.Module):
    """One-hidden-layer MLP ``Linear -> [BatchNorm1d] -> ReLU -> Linear`` for contrastive branches.

    SupCon / SimCLR's projection head (Chen et al. 2020, Sec. 2.1: ``z = W2 ReLU(W1 h)``);
    ``batch_norm=True`` adds BN after the hidden layer as SimCLR v2 / MoCo v3 do (the hidden
    Linear then has no bias, which BN would cancel).

    Shapes: ``[B, in_dim] -> [B, out_dim]``.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = False
    ) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise LongtailError(
                f"ProjectionHead dims must be positive, got in={in_dim}, hidden={hidden_dim}, "
                f"out={out_dim}: set the projection sizes to positive integers"
            )
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

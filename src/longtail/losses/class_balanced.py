"""Class-balanced loss (Cui et al., CVPR 2019): effective-number weights on a base loss."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses.class_prior import (
    ClassCounts,
    as_class_counts,
    check_beta,
    check_logits,
    check_non_negative,
)
from longtail.losses.reweighting import class_balanced_weights

CBLossType = Literal["softmax", "sigmoid", "focal"]
CB_LOSS_TYPES: tuple[str, ...] = get_args(CBLossType)


class ClassBalancedLoss(nn.Module):
    """CB(p, y) = w_y L(p, y), w_c = (1 - beta) / (1 - beta^{n_c}) normalised to sum C.

    Follows Cui et al.'s own code (``richardaecn/class-balanced-loss``, ``src/cifar_main.py``):
    every sample is weighted by its own class's weight w_{y_i}, and the batch is reduced as
    (1/N) sum_i w_{y_i} L_i (their sum over samples divided by the number of positives, which is N
    for one-hot targets; note this is not F.cross_entropy's weighted mean sum w L / sum w).

    - ``softmax``: L_i = -log softmax(z_i)_{y_i}.
    - ``sigmoid``: L_i = sum_c BCE(z_ic, [c = y_i]), the C one-vs-all binary terms of the paper, all
      weighted by the sample's w_{y_i} (not by each term's class c).
    - ``focal``: L_i = sum_c (1 - p_t,ic)^gamma BCE(z_ic, [c = y_i]), p_t the sigmoid probability
      of the true binary outcome (the paper's CB focal loss, not the softmax focal loss).

    Cui et al. initialise the classifier bias of the sigmoid/focal variants to -log((1 - pi) / pi),
    pi = 0.01; that belongs to the model, not here. Absent classes (n_c = 0) get weight 0.

    Shapes: logits [N, C], labels [N] int64 -> scalar. Buffer: ``weights`` [C] float32.
    """

    weights: Tensor

    def __init__(
        self,
        class_counts: ClassCounts,
        beta: float = 0.9999,
        loss_type: CBLossType = "softmax",
        gamma: float = 1.0,
    ) -> None:
        super().__init__()
        if loss_type not in CB_LOSS_TYPES:
            raise LongtailError(
                f"loss_type {loss_type!r} is unknown: use one of {', '.join(CB_LOSS_TYPES)}"
            )
        counts = as_class_counts(class_counts)
        self.beta = check_beta(beta)
        self.loss_type = loss_type
        self.gamma = check_non_negative("gamma", gamma)
        self.register_buffer("weights", class_balanced_weights(counts.tolist(), self.beta))

    def per_sample(self, x: Tensor, labels: Tensor) -> Tensor:
        """Unweighted L_i [N] of the chosen base loss for float logits x [N, C]."""
        if self.loss_type == "softmax":
            return F.cross_entropy(x, labels, reduction="none")
        # signed logit of the true binary outcome: z where the target is 1, -z where it is 0
        signed = x * (2.0 * F.one_hot(labels, x.shape[1]).to(x.dtype) - 1.0)
        bce = -F.logsigmoid(signed)
        if self.loss_type == "focal" and self.gamma > 0:
            bce = torch.exp(self.gamma * F.logsigmoid(-signed)) * bce  # (1 - p_t)^gamma
        return bce.sum(dim=1)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        x = check_logits(logits, labels, self.weights.numel())
        return (self.weights.to(x.dtype)[labels] * self.per_sample(x, labels)).mean()

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss_type={self.loss_type!r}, gamma={self.gamma}"

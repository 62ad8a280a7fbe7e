"""The classification objective of a run: which loss, and how its class weights change per epoch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.dist import global_mean
from longtail.losses import (
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
)
from longtail.losses.config import LossConfig
from longtail.losses.schedules import drw_weights


class Objective(nn.Module):
    """``loss(logits [N, C], labels [N]) -> scalar``, with DRW's deferred class weights.

    DRW (Cao et al. 2019): from ``loss.reweight_epoch`` on, the class-balanced weights
    (1 - beta) / (1 - beta^n_c) (normalised to sum C) weight the loss as a weighted mean, as in
    the LDAM-DRW code; before it the loss is unweighted. Re-weighting applies to ce, focal and ldam.
    """

    def __init__(self, cfg: LossConfig, class_counts: Sequence[int]) -> None:
        super().__init__()
        self.cfg = cfg
        self.counts = list(class_counts)
        self.weight: Tensor | None = None
        self.loss = self._build(None)

    def _build(self, weight: Tensor | None) -> nn.Module | None:
        c, counts = self.cfg, self.counts
        if c.name == "ce":
            return None  # F.cross_entropy with self.weight
        if c.name == "focal":
            return FocalLoss(gamma=c.gamma, weight=weight)
        if c.name == "ldam":
            return LDAMLoss(counts, max_margin=c.max_margin, s=c.scale, weight=weight)
        if c.name == "class_balanced":
            return ClassBalancedLoss(
                counts,
                beta=c.beta,
                loss_type=c.cb_type,  # type: ignore[arg-type]
                gamma=c.gamma,
            )
        if c.name == "logit_adjusted":
            return LogitAdjustedLoss(counts, tau=c.tau)
        return BalancedSoftmaxLoss(counts)

    def set_epoch(self, epoch: int, device: torch.device) -> None:
        """Switch DRW weights on at ``loss.reweight_epoch`` (no-op without re-weighting)."""
        if self.cfg.reweight == "none":
            return
        weight = drw_weights(self.counts, epoch, self.cfg.reweight_epoch, self.cfg.beta)
        self.weight = None if weight is None else weight.to(device)
        if isinstance(self.loss, LDAMLoss):
            self.loss.set_weight(self.weight)
        elif isinstance(self.loss, FocalLoss):
            self.loss = FocalLoss(gamma=self.cfg.gamma, weight=self.weight)
        if self.loss is not None:
            self.loss.to(device)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss of this process's batch; under DDP, a DRW-weighted mean is made global
        (``sum w_i l_i / sum w_i`` over every rank's examples, :func:`longtail.dist.global_mean`).
        Unweighted means need nothing: every rank holds the same number of examples."""
        if self.loss is None:
            weight = None if self.weight is None else self.weight.to(logits.dtype)
            local = F.cross_entropy(logits, labels, weight=weight)
        else:
            local = self.loss(logits, labels)
        if self.weight is None or not isinstance(self.loss, FocalLoss | LDAMLoss | None):
            return local
        return global_mean(local, self.weight.to(logits.dtype)[labels].sum())

"""Batch contrastive losses: InfoNCE (SimCLR), SupCon and KCL, one kernel and three positive masks.

For anchor i with unit projection z_i, candidates z_j (the batch without i, or ``ref_features``)
and positives P(i), every loss here is SupCon's L_out (Khosla et al. 2020, eq. 2):

    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )

averaged over the anchors with |P(i)| > 0 (0 with a graph when none has one: never NaN). Shapes:
features [N, D] (raw projections; normalised here), labels [N], ref_features [M, D], ref_labels [M].
There is no base-temperature factor: SupContrast multiplies the loss by tau / tau_base (0.1 / 0.07
= 1.43 in its CIFAR recipe), which is a silent learning-rate change; scale the loss outside if needed.

``anchor_weights`` [N] (>= 0, one per row of ``features``) turns the mean into
sum_i w_i L_i / #anchors-with-positives (rwSAM's re-weighted perturbation loss); anchors without
positives contribute nothing whatever their weight. None (the default) is the plain mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses.kernel import masked_contrastive, weighted_mean_over_valid
from longtail.losses.masks import (
    ContrastSet,
    DrawLayout,
    build_contrast_set,
    check_temperature,
    cosine_logits,
    kcl_positive_mask,
)


def contrast_mean(
    contrast: ContrastSet,
    positives: Tensor,
    temperature: float,
    anchor_weights: Tensor | None = None,
) -> Tensor:
    """L_out over the contrast set, the denominator every candidate but the anchor itself.

    ``anchor_weights`` [N] weights each anchor's L_i (see :func:`weighted_mean_over_valid`).
    """
    logits = cosine_logits(contrast.anchors, contrast.candidates, temperature)
    loss, valid = masked_contrastive(logits, positives, contrast.not_self)
    return weighted_mean_over_valid(loss, valid, anchor_weights)


class SupConLoss(nn.Module):
    """Supervised contrastive loss L_out (Khosla et al. 2020, eq. 2).

    P(i) = every other entry with the anchor's label (its other views and all views of its class);
    the denominator is every entry but the anchor. Default tau = 0.1: SupContrast's CIFAR recipe
    (``main_supcon.py --temp 0.1``) and Hybrid-SC (Wang et al. 2021, §4.2).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self,
        features: Tensor,
        labels: Tensor,
        *,
        ref_features: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_offset: int | None = None,
        anchor_weights: Tensor | None = None,
    ) -> Tensor:
        """features [N, D], labels [N], anchor_weights [N] (refs [M, D] / [M]) -> scalar."""
        contrast = build_contrast_set(features, labels, ref_features, ref_labels, self_offset)
        positives = (contrast.labels[:, None] == contrast.ref_labels[None, :]) & contrast.not_self
        return contrast_mean(contrast, positives, self.temperature, anchor_weights)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class InfoNCELoss(SupConLoss):
    """NT-Xent / InfoNCE of SimCLR (Chen et al. 2020, eq. 1): SupCon with instance ids as labels.

    ``labels`` are INSTANCE ids (both views of image b carry id b), so P(i) = the other view(s) of
    the anchor's image and the denominator every other entry (2N - 2 negatives for N pairs).
    Default tau = 0.5: SimCLR on CIFAR (SupContrast README, ``--method SimCLR``).
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__(temperature)


class KCLLoss(nn.Module):
    """k-positive contrastive loss (KCL, Kang et al. ICLR 2021): SupCon with at most k positives.

    Each anchor keeps k same-class positives drawn uniformly at random (``generator`` makes the
    draw reproducible); same-class entries not drawn stay in the denominator as negatives (BalFeat's
    default "v1"). With ``instance_ids`` [N] (and ``ref_instance_ids`` [M] when refs are given) the
    anchor's other views are always positive and do not count against k, as BalFeat's own key;
    with k >= every same-class candidate this is exactly :class:`SupConLoss`. BalFeat draws from a
    MoCo queue with a top-k over a 0/1 mask (whatever ties give); pass the keys and the queue as
    refs to get that setting with a uniform draw. Default k = 6, tau = 0.07: BalFeat's README runs.
    """

    def __init__(
        self, k: int = 6, temperature: float = 0.07, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not (isinstance(k, int) and k >= 1):
            raise LongtailError(f"KCL k={k!r} must be an integer >= 1: pass e.g. k=6")
        self.k = k
        self.temperature = check_temperature(temperature)
        self.generator = generator

    def forward(
        self,
        features: Tensor,
        labels: Tensor,
        *,
        ref_features: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_offset: int | None = None,
        instance_ids: Tensor | None = None,
        ref_instance_ids: Tensor | None = None,
        anchor_weights: Tensor | None = None,
        layout: DrawLayout | None = None,
    ) -> Tensor:
        """features [N, D], labels [N], instance_ids [N], anchor_weights [N] (refs: [M, D], [M],
        [M]) -> scalar. ``layout``: these N x M keys' place in a larger draw (a rank's share of
        the global batch's draw, :class:`longtail.losses.masks.DrawLayout`)."""
        contrast = build_contrast_set(features, labels, ref_features, ref_labels, self_offset)
        if ref_features is None:
            ref_instance_ids = instance_ids
        positives = kcl_positive_mask(
            contrast, self.k, self.generator, instance_ids, ref_instance_ids, layout
        )
        return contrast_mean(contrast, positives, self.temperature, anchor_weights)

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}"

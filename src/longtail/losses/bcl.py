"""Balanced contrastive loss (BCL; Zhu et al., CVPR 2022, eq. 5-6): SupCon, class-averaged and
class-complemented.

Anchors are the batch's views z_i (unit rows, labels y_i); the contrast set is every view but the
anchor plus one prototype per class c_k (the classifier's weights through a head, so every class
is present in every batch: *class-complement*). Each class's terms in the denominator are divided
by that class's number of members in the contrast set (views and its prototype), counting the
anchor's own class without the anchor (*class-averaging*):

    L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) /
                                          sum_{k in classes} 1/|A_k(i)| sum_{a in A_k(i)} exp(z_i.z_a / tau) )

P(i): the other views of class y_i and the prototype c_{y_i}; A_k(i): the members of class k in the
contrast set, the anchor excluded. Averaged over all anchors (each has a positive: its prototype).
Without prototypes and without class-averaging this is SupCon's L_out (:class:`SupConLoss`).

Shapes: features [N, D] (raw; normalised here), labels [N] int64, prototypes [C, D] or None
(normalised here; gradients flow into them), ref_features [M, D] / ref_labels [M] (the global
batch under torchrun). Default tau = 0.07, BCL's ``--temp``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from longtail.losses.kernel import masked_contrastive, mean_over_valid
from longtail.losses.masks import build_contrast_set, check_temperature, cosine_logits, unit_rows


class BCLLoss(nn.Module):
    """``loss(features, labels, prototypes=..., ref_features=..., ...)`` -> scalar (docstring above)."""

    def __init__(
        self, num_classes: int, temperature: float = 0.07, class_average: bool = True
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.temperature = check_temperature(temperature)
        self.class_average = class_average

    def forward(
        self,
        features: Tensor,
        labels: Tensor,
        *,
        prototypes: Tensor | None = None,
        ref_features: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_offset: int | None = None,
    ) -> Tensor:
        contrast = build_contrast_set(features, labels, ref_features, ref_labels, self_offset)
        candidates, ref_y, not_self = contrast.candidates, contrast.ref_labels, contrast.not_self
        if prototypes is not None:
            classes = torch.arange(self.num_classes, device=labels.device)
            candidates = torch.cat([candidates, unit_rows(prototypes).to(candidates.dtype)])
            ref_y = torch.cat([ref_y, classes])
            not_self = torch.cat(
                [not_self, torch.ones_like(not_self[:, :1]).expand(-1, len(classes))], 1
            )
        logits = cosine_logits(contrast.anchors, candidates, self.temperature)  # [N, M (+ C)]
        same = contrast.labels[:, None] == ref_y[None, :]
        positives = same & not_self
        weights = None
        if self.class_average:  # 1 / |A_k(i)|: the class's count, less the anchor for its own
            counts = torch.bincount(ref_y, minlength=self.num_classes).to(logits.dtype)
            weights = 1.0 / (counts[ref_y][None, :] - positives.to(logits.dtype)).clamp_min(1.0)
        loss, valid = masked_contrastive(logits, positives, not_self, weights)
        return mean_over_valid(loss, valid)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, temperature={self.temperature},"
            f" class_average={self.class_average}"
        )

"""Pre-training a representation on two views of instance-sampled batches, with optional (rw)SAM.

What SimCLR, SupCon and SimSiam share: batches ``([x1, x2], y, indices)`` (the SSL augmentation
set: random resized crop, flip, colour jitter, grayscale), the :class:`Pretrain` step, and the
two-view contrastive network.

* **SimCLR** (Chen et al., ICML 2020): InfoNCE / NT-Xent over the 2B projections, positives the
  other view of the same image (eq. 1). **SupCon** (Khosla et al. 2020): the same with every
  same-class view positive (L_out, eq. 2). Both views go through one forward (SupContrast's
  ``torch.cat`` of the views), so BatchNorm sees 2B images (:class:`ContrastiveNet`).

With ``sam.rho > 0`` every step is a SAM step (:func:`longtail.optim.sam.sam_step`): the loss that
defines the perturbation is weighted per example by :class:`~longtail.strategies.rwsam.ExampleWeights`
(rwSAM; all ones for plain SAM), the descent gradient is the unweighted loss at the perturbed point.
The backbone's classifier (``backbone.fc``) is never trained here: a run's accuracy is its kNN or
linear probe on the frozen features (:mod:`longtail.train.probe_run`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.dist import distributed_contrastive
from longtail.losses.contrastive import InfoNCELoss, SupConLoss
from longtail.models.heads import ProjectionHead
from longtail.strategies.base import Method, MethodParts, ProjectedConfig, check_pretraining
from longtail.strategies.rwsam import ExampleWeights

if TYPE_CHECKING:
    from longtail.config import Config


class ContrastiveNet(nn.Module):
    """Backbone + projection MLP (``proj_hidden``, ``proj_dim``) for SimCLR (``use_labels=False``)
    or SupCon (``use_labels=True``) at temperature ``cfg.temperature``."""

    def __init__(self, backbone: nn.Module, cfg: ProjectedConfig, use_labels: bool) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.projector = ProjectionHead(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_batch_norm)
        self.use_labels = use_labels
        self.criterion = (SupConLoss if use_labels else InfoNCELoss)(cfg.temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]

    def embed(self, views: list[Tensor]) -> Tensor:
        """Projections [V * B, proj_dim] of the views in one forward (view-major)."""
        return self.projector(self.backbone.forward_pooled(torch.cat(views)))  # type: ignore[no-any-return, operator]

    def objective(
        self, z: Tensor, labels: Tensor, weights: Tensor | None, ids: Tensor | None = None
    ) -> Tensor:
        """L_out over the projections in float32; per-anchor weights repeat ``weights`` [B].

        SimCLR's instance labels are ``ids`` [B] (the images' dataset indices: unique across the
        ranks of a torchrun run, whose views are contrasted together), else 0..B-1.
        """
        b = labels.shape[0]
        views = z.shape[0] // b
        if self.use_labels:
            ids = labels
        elif ids is None:
            ids = torch.arange(b, device=labels.device)
        anchor_weights = None if weights is None else weights.repeat(views)
        return distributed_contrastive(
            self.criterion,
            runtime.at_least_fp32(z),
            ids.repeat(views),
            anchor_weights=anchor_weights,
        )

    def loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        return self.objective(self.embed(views), labels, weights)


class Pretrain(Method):
    """Pre-training a network with ``embed(views)`` and ``objective(out, labels, weights, ids)``
    on batches ``([x1, x2], y, indices)``: plain, SAM, or rwSAM (SAM's first pass weighted per
    example by :class:`~longtail.strategies.rwsam.ExampleWeights`)."""

    trains_classifier = False  # evaluated by kNN / linear probes on the frozen backbone
    example_weights = True
    supports_compile = False

    def __init__(self, net: nn.Module, weights: ExampleWeights) -> None:
        super().__init__()
        self.net, self.weights = net, weights

    @classmethod
    def build(cls, parts: MethodParts, cfg: Any) -> tuple[Any, Pretrain]:
        """Two views of one instance-sampled batch, with its positions (rwSAM's weights)."""
        views = [(parts.augment, "view1"), (parts.augment, "view2")]
        weights = ExampleWeights(
            parts.sam,
            parts.data.train_images,
            parts.data.train_labels,
            parts.data.train_counts,
            parts.net.backbone,  # type: ignore[arg-type]
            parts.transform,
            parts.eval.batch_size,
            (parts.eval.many_threshold, parts.eval.few_threshold),
        )
        return parts.loader("random", views, with_indices=True), cls(parts.net, weights)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """rwSAM's KDE weights are re-estimated here, every ``sam.refresh_every`` epochs."""
        self.weights.set_epoch(epoch)

    def epoch_record(self) -> dict[str, float]:
        return self.weights.summary() if self.weights.active else {}

    def forward(self, batch: Any) -> Any:
        return self.net.embed(batch[0])  # type: ignore[operator]

    def loss(self, out: Any, batch: Any, reweighted: bool = False) -> Tensor:
        _, labels, indices = batch
        weights = self.weights(indices) if reweighted else None
        return self.net.objective(out, labels, weights, ids=indices)  # type: ignore[operator, no-any-return]

    def step_state(self) -> dict[str, Any]:
        return {"weights": self.weights.state_dict()}

    def load_step_state(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])


class ContrastivePretrain(Pretrain):
    """SimCLR or SupCon (``uses_labels``) on a :class:`ContrastiveNet`."""

    uses_labels = False

    @classmethod
    def network(cls, backbone: nn.Module, cfg: ProjectedConfig, num_classes: int) -> nn.Module:
        return ContrastiveNet(backbone, cfg, use_labels=cls.uses_labels)

    @classmethod
    def check(cls, cfg: Config) -> None:
        check_pretraining(cfg)

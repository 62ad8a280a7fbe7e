"""Pre-training a representation: SimSiam, SimCLR and SupCon, with optional (rw)SAM steps.

Each batch is two augmented views of B instance-sampled images (the SSL augmentation set:
random resized crop, flip, colour jitter, grayscale), ``([x1, x2], y, indices)``.

* **SimSiam** (Chen & He, CVPR 2021): z = projector(backbone(x)), p = predictor(z);
  L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D the negative cosine (eq. 1-2). The views go
  through the network one at a time, as the official code does (BatchNorm statistics per view).
* **SimCLR** (Chen et al., ICML 2020): InfoNCE / NT-Xent over the 2B projections, positives the
  other view of the same image (eq. 1). **SupCon** (Khosla et al. 2020): the same with every
  same-class view positive (L_out, eq. 2). Both views go through one forward (SupContrast's
  ``torch.cat`` of the views), so BatchNorm sees 2B images.

MoCo v2 (He et al. 2020; Chen et al. 2020) is :mod:`longtail.strategies.kcl` with k = 0: the own
key is the only positive and the queue's keys are negatives.

With ``sam.rho > 0`` every step is a SAM step (:func:`longtail.optim.sam.sam_step`): the loss that
defines the perturbation is weighted per example by :class:`~longtail.strategies.rwsam.ExampleWeights`
(rwSAM; all ones for plain SAM), the descent gradient is the unweighted loss at the perturbed point.
The backbone's classifier (``backbone.fc``) is never trained here: a run's accuracy is its kNN or
linear probe on the frozen features (:mod:`longtail.train.probe_run`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.config import StrategyConfig
from longtail.dist import distributed_contrastive
from longtail.losses.contrastive import InfoNCELoss, SupConLoss
from longtail.losses.simsiam import SimSiamLoss
from longtail.models.heads import ProjectionHead
from longtail.models.ssl_heads import SimSiamPredictor, SimSiamProjector
from longtail.strategies.rwsam import ExampleWeights


class SimSiamNet(nn.Module):
    """Backbone + SimSiam projector (``proj_layers`` deep, ``proj_hidden`` wide, ``proj_dim`` out)
    + predictor (``proj_dim -> pred_hidden -> proj_dim``). ``forward`` is the backbone's own."""

    def __init__(self, backbone: nn.Module, cfg: StrategyConfig) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.projector = SimSiamProjector(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_layers)
        self.predictor = SimSiamPredictor(cfg.proj_dim, cfg.pred_hidden)
        self.criterion = SimSiamLoss()

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]

    def embed(self, views: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(p1, p2, z1, z2) [B, proj_dim] of two views ``[B, C, H, W]``, one forward each."""
        z1, z2 = (self.projector(self.backbone.forward_pooled(v)) for v in views)  # type: ignore[operator]
        return self.predictor(z1), self.predictor(z2), z1, z2

    def objective(self, out: tuple[Tensor, ...], labels: Tensor, weights: Tensor | None) -> Tensor:
        """SimSiam's symmetrised loss in float32; ``weights`` [B] or None."""
        p1, p2, z1, z2 = (runtime.at_least_fp32(t) for t in out)
        return self.criterion(p1, p2, z1, z2, weights=weights)  # type: ignore[no-any-return]

    def loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        return self.objective(self.embed(views), labels, weights)


class ContrastiveNet(nn.Module):
    """Backbone + projection MLP (``proj_hidden``, ``proj_dim``) for SimCLR (``use_labels=False``)
    or SupCon (``use_labels=True``) at temperature ``cfg.temperature``."""

    def __init__(self, backbone: nn.Module, cfg: StrategyConfig, use_labels: bool) -> None:
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


class Pretrain(nn.Module):
    """Pre-training a :class:`SimSiamNet` or :class:`ContrastiveNet` on batches
    ``([x1, x2], y, indices)``: plain, SAM, or rwSAM (SAM's first pass weighted per example by
    :class:`~longtail.strategies.rwsam.ExampleWeights`)."""

    def __init__(self, net: SimSiamNet | ContrastiveNet, weights: ExampleWeights) -> None:
        super().__init__()
        self.net, self.weights = net, weights

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """rwSAM's KDE weights are re-estimated here, every ``sam.refresh_every`` epochs."""
        self.weights.set_epoch(epoch)

    def epoch_record(self) -> dict[str, float]:
        return self.weights.summary() if self.weights.active else {}

    def forward(self, batch: Any) -> Any:
        return self.net.embed(batch[0])

    def loss(self, out: Any, batch: Any, reweighted: bool = False) -> Tensor:
        _, labels, indices = batch
        weights = self.weights(indices) if reweighted else None
        if isinstance(self.net, ContrastiveNet):
            return self.net.objective(out, labels, weights, ids=indices)
        return self.net.objective(out, labels, weights)

    def step_state(self) -> dict[str, Any]:
        return {"weights": self.weights.state_dict()}

    def load_step_state(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])

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
from longtail.config import SamConfig, StrategyConfig
from longtail.losses.contrastive import InfoNCELoss, SupConLoss
from longtail.losses.simsiam import SimSiamLoss
from longtail.models.heads import ProjectionHead
from longtail.models.ssl_heads import SimSiamPredictor, SimSiamProjector
from longtail.optim.sam import sam_step
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

    def loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        """SimSiam's symmetrised loss of two views ``[B, C, H, W]``; ``weights`` [B] or None."""
        z1, z2 = (self.projector(self.backbone.forward_pooled(v)) for v in views)  # type: ignore[operator]
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return self.criterion(p1.float(), p2.float(), z1.float(), z2.float(), weights=weights)  # type: ignore[no-any-return]


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

    def loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        """L_out over the 2B projections (view-major); per-anchor weights repeat ``weights`` [B]."""
        b = labels.shape[0]
        z = self.projector(self.backbone.forward_pooled(torch.cat(views))).float()  # type: ignore[operator]
        ids = labels if self.use_labels else torch.arange(b, device=labels.device)
        anchor_weights = None if weights is None else weights.repeat(len(views))
        return self.criterion(z, ids.repeat(len(views)), anchor_weights=anchor_weights)  # type: ignore[no-any-return]


class PretrainStep:
    """One step of a :class:`SimSiamNet` or :class:`ContrastiveNet`: plain, SAM or rwSAM."""

    def __init__(
        self,
        net: SimSiamNet | ContrastiveNet,
        optimizer: torch.optim.Optimizer,
        sam: SamConfig,
        weights: ExampleWeights,
        device: torch.device,
        amp: torch.dtype | None,
        channels_last: bool,
    ) -> None:
        self.net, self.optimizer, self.sam, self.weights = net, optimizer, sam, weights
        self.device, self.amp, self.channels_last = device, amp, channels_last

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """rwSAM's KDE weights are re-estimated here, every ``sam.refresh_every`` epochs."""
        self.weights.set_epoch(epoch)

    def epoch_record(self) -> dict[str, float]:
        return self.weights.summary() if self.weights.active else {}

    def _loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        if self.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        with runtime.autocast(self.amp, self.device):
            return self.net.loss(views, labels, weights).float()

    def __call__(self, batch: Any, lr: float) -> Tensor:
        views, labels, indices = batch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.sam.rho > 0:
            weights = self.weights(indices)
            return sam_step(
                self.optimizer,
                lambda: self._loss(views, labels, weights),
                lambda: self._loss(views, labels, None),
                rho=self.sam.rho,
                adaptive=self.sam.adaptive,
                eta=self.sam.eta,
                model=self.net,
            )
        loss = self._loss(views, labels, None)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])

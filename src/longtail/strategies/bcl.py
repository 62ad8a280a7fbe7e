"""Balanced Contrastive Learning (BCL; Zhu et al., CVPR 2022): logit-adjusted CE + balanced SupCon.

Each instance-sampled image is seen three times: a classification view (the recipe's
``augment.*``, RandAugment in the paper) and two contrastive views (SimCLR's augmentation,
"sim-sim"; ``strategy.contrastive_views`` picks sim-rand or rand-rand). All three go through the
backbone in one forward (BatchNorm over 3B images, as BCL's ``torch.cat`` of the views). Then

    L = ce_weight * L_LA(W x_ce) + bcl_weight * L_BCL(g(x_1), g(x_2); centres = g'(W))

L_LA: the run's ``loss.*`` (BCL: ``logit_adjusted`` with tau = 1, on a cosine classifier whose
cosines are multiplied by ``logit_scale``), L_BCL: :class:`~longtail.losses.bcl.BCLLoss`
(class-averaged denominator, the classifier's weights W through the centre head g' as one
prototype per class); g and g' are Linear-BN-ReLU-Linear heads to ``proj_dim``, outputs
normalised in the loss. Under torchrun the views of every rank are contrasted (the prototypes are
parameters, the same on every rank).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.data.augment_spec import AugmentSpec
from longtail.dist import distributed_contrastive
from longtail.errors import LongtailError, require
from longtail.losses.bcl import BCLLoss
from longtail.models.heads import ProjectionHead
from longtail.models.sync_bn import ReplicatedBatchNorm1d
from longtail.strategies.base import Method, MethodParts, ProjectedConfig
from longtail.strategies.registry import register

if TYPE_CHECKING:
    from longtail.config import Config


@dataclass
class BCLConfig(ProjectedConfig):
    """strategy.* of bcl: the two losses' weights, the heads and the contrastive views."""

    name: str = "bcl"
    temperature: float = 0.07  # BCL main.py --temp
    proj_hidden: int = 512  # heads' hidden width (BCL: the backbone's width, e.g. 2048)
    proj_dim: int = 128  # heads' output (BCL ImageNet: 1024; CIFAR: our choice)
    proj_batch_norm: bool = True  # BCL's heads are Linear-BN-ReLU-Linear
    ce_weight: float = 1.0  # alpha (BCL main.py --alpha)
    bcl_weight: float = 0.35  # beta (BCL main.py --beta)
    class_average: bool = True  # class-averaging of the denominator (off: the ablation)
    prototypes: bool = True  # class-complement: one centre per class from the classifier
    logit_scale: float = 1.0  # multiplies the classifier's logits before loss.*
    contrastive_views: str = "sim-sim"  # sim: SimCLR augmentation below; rand: augment.*
    sim_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # sim: RandomResizedCrop
    # BCL main.py augmentation_sim: RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8), gray 0.2
    sim_jitter: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.1])  # b, c, s, hue
    sim_jitter_p: float = 0.8
    sim_grayscale_p: float = 0.2


class BCLNet(nn.Module):
    """Backbone (its classifier the one trained) + projection head g + centre head g'.

    ``forward`` is the backbone's classifier path, so evaluation treats it like any model.
    """

    def __init__(self, backbone: nn.Module, cfg: BCLConfig) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.projector = ProjectionHead(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_batch_norm)
        self.center_head = ProjectionHead(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_batch_norm)
        if cfg.proj_batch_norm:  # its rows are the classifier's weights: alike on every rank
            self.center_head.net[1] = ReplicatedBatchNorm1d(cfg.proj_hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]

    def pooled(self, x: Tensor) -> Tensor:
        return self.backbone.forward_pooled(x)  # type: ignore[no-any-return, operator]

    def classify(self, pooled: Tensor) -> Tensor:
        return self.backbone.get_classifier()(pooled)  # type: ignore[no-any-return, operator]

    def centers(self) -> Tensor:
        """g'(W): [C, proj_dim], the classifier's class vectors through the centre head."""
        weight = self.backbone.get_classifier().weight  # type: ignore[operator]
        return self.center_head(weight)  # type: ignore[no-any-return]


def sim_view(augment: AugmentSpec, cfg: BCLConfig) -> AugmentSpec:
    """The SimCLR-style contrastive view: resized crop, flip, colour jitter, grayscale (no
    RandAugment: BCL's ``augmentation_sim``)."""
    return replace(augment, crop="resized", resized_scale=list(cfg.sim_scale),
                   jitter=list(cfg.sim_jitter), jitter_p=cfg.sim_jitter_p,
                   grayscale_p=cfg.sim_grayscale_p, randaugment_ops=0)  # fmt: skip


@register
class BCL(Method):
    """The BCL step on batches ``([x_ce, x_1, x_2], y)`` of instance-sampled images."""

    config_class = BCLConfig
    supports_sam = False  # not wired: two losses, one of them over gathered views
    summary = "BCL: logit-adjusted CE + class-averaged, class-complemented SupCon (Zhu et al. 2022)"
    supports_compile = False  # its step is not compiled
    choices = {"contrastive_views": ("sim-sim", "sim-rand", "rand-rand")}

    def __init__(self, net: BCLNet, ce_loss: nn.Module, cfg: BCLConfig, num_classes: int) -> None:
        super().__init__()
        self.net, self.ce_loss, self.cfg = net, ce_loss, cfg
        self.contrastive = BCLLoss(num_classes, cfg.temperature, cfg.class_average)

    @classmethod
    def network(cls, backbone: nn.Module, cfg: BCLConfig, num_classes: int) -> nn.Module:
        return BCLNet(backbone, cfg)

    @classmethod
    def build(cls, parts: MethodParts, cfg: BCLConfig) -> tuple[Any, BCL]:
        rand, sim = parts.augment, sim_view(parts.augment, cfg)
        first, second = cfg.contrastive_views.split("-")
        kinds = {"sim": sim, "rand": rand}
        views = [(rand, "ce_view"), (kinds[first], "view1"), (kinds[second], "view2")]
        assert isinstance(parts.net, BCLNet)
        step = cls(parts.net, parts.objective, cfg, parts.data.num_classes)
        return parts.loader("random", views), step

    @classmethod
    def check(cls, cfg: Config) -> None:
        s = cfg.strategy
        assert isinstance(s, BCLConfig)
        require(
            ("strategy.temperature", s.temperature, s.temperature > 0, "> 0"),
            ("strategy.proj_dim", s.proj_dim, s.proj_dim >= 1, ">= 1"),
            ("strategy.proj_hidden", s.proj_hidden, s.proj_hidden >= 1, ">= 1"),
            ("strategy.ce_weight", s.ce_weight, s.ce_weight >= 0, ">= 0"),
            ("strategy.bcl_weight", s.bcl_weight, s.bcl_weight >= 0, ">= 0"),
            ("strategy.logit_scale", s.logit_scale, s.logit_scale > 0, "> 0"),
        )
        if cfg.train.resample_epoch is not None or cfg.train.sampler != "random":
            raise LongtailError(
                "strategy.name=bcl trains on instance-sampled batches (the logit adjustment"
                " balances the classifier): set train.sampler=random, drop train.resample_epoch"
            )
        sim_view(AugmentSpec(), s)  # the SimCLR view's values, checked as any augment.*

    def forward(self, batch: Any) -> dict[str, Tensor]:
        """``logits`` [B, C] of the classification view, ``z`` [2B, d] of the contrastive views."""
        (x_ce, x1, x2), _ = batch
        n = x_ce.shape[0]
        pooled = self.net.pooled(torch.cat([x_ce, x1, x2]))
        return {"logits": self.net.classify(pooled[:n]), "z": self.net.projector(pooled[n:])}

    def branch_losses(self, out: dict[str, Tensor], batch: Any) -> tuple[Tensor, Tensor]:
        """(L_LA, L_BCL), float32 scalars."""
        labels = batch[1]
        logits = runtime.at_least_fp32(out["logits"]) * self.cfg.logit_scale
        centers = runtime.at_least_fp32(self.net.centers()) if self.cfg.prototypes else None
        every_anchor = centers is not None  # each anchor has a positive: its class's centre
        con = distributed_contrastive(
            self.contrastive,
            runtime.at_least_fp32(out["z"]),
            torch.cat([labels, labels]),
            prototypes=centers,
            **({"has_positive": lambda y, *_: torch.ones_like(y, dtype=torch.bool)}
               if every_anchor else {}),
        )  # fmt: skip
        return self.ce_loss(logits, labels), con

    def loss(self, out: dict[str, Tensor], batch: Any, reweighted: bool = False) -> Tensor:
        ce, con = self.branch_losses(out, batch)
        return self.cfg.ce_weight * ce + self.cfg.bcl_weight * con

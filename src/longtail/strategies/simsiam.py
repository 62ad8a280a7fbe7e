"""SimSiam (Chen & He, CVPR 2021): two views, a predictor and a stop-gradient, no negatives.

z = projector(backbone(x)), p = predictor(z); L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D
the negative cosine (eq. 1-2). The views go through the network one at a time, as the official
code does (BatchNorm statistics per view). Steps, rwSAM and batches: :mod:`.pretraining`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from longtail import runtime
from longtail.errors import LongtailError, require
from longtail.losses.simsiam import SimSiamLoss
from longtail.models.ssl_heads import SimSiamPredictor, SimSiamProjector
from longtail.strategies.base import MethodConfig, check_pretraining
from longtail.strategies.pretraining import Pretrain
from longtail.strategies.registry import register

if TYPE_CHECKING:
    from longtail.config import Config


@dataclass
class SimSiamConfig(MethodConfig):
    """strategy.* of simsiam: the projector and the predictor."""

    name: str = "simsiam"
    proj_hidden: int = 512  # projector width
    proj_dim: int = 128  # projector output (and predictor input / output)
    proj_layers: int = 2  # projector depth: 2 on CIFAR (Imbalanced-SSL), 3 on ImageNet
    pred_hidden: int = 512  # predictor bottleneck (SimSiam: 2048 -> 512 -> 2048)


class SimSiamNet(nn.Module):
    """Backbone + SimSiam projector (``proj_layers`` deep, ``proj_hidden`` wide, ``proj_dim`` out)
    + predictor (``proj_dim -> pred_hidden -> proj_dim``). ``forward`` is the backbone's own."""

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig) -> None:
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

    def objective(
        self,
        out: tuple[Tensor, ...],
        labels: Tensor,
        weights: Tensor | None,
        ids: Tensor | None = None,
    ) -> Tensor:
        """SimSiam's symmetrised loss in float32; ``weights`` [B] or None (labels, ids unused)."""
        p1, p2, z1, z2 = (runtime.at_least_fp32(t) for t in out)
        return self.criterion(p1, p2, z1, z2, weights=weights)  # type: ignore[no-any-return]

    def loss(self, views: list[Tensor], labels: Tensor, weights: Tensor | None) -> Tensor:
        return self.objective(self.embed(views), labels, weights)


@register
class SimSiam(Pretrain):
    config_class = SimSiamConfig
    summary = "SimSiam: a predictor and a stop-gradient, no negatives (Chen & He 2021)"

    @classmethod
    def network(cls, backbone: nn.Module, cfg: SimSiamConfig, num_classes: int) -> nn.Module:
        return SimSiamNet(backbone, cfg)

    @classmethod
    def check(cls, cfg: Config) -> None:
        check_pretraining(cfg)
        s = cfg.strategy
        assert isinstance(s, SimSiamConfig)
        require(
            ("strategy.proj_dim", s.proj_dim, s.proj_dim >= 1, ">= 1"),
            ("strategy.proj_hidden", s.proj_hidden, s.proj_hidden >= 1, ">= 1"),
            ("strategy.pred_hidden", s.pred_hidden, s.pred_hidden >= 1, ">= 1"),
        )
        if s.proj_layers not in (2, 3):
            raise LongtailError(
                f"strategy.proj_layers={s.proj_layers} must be 2 (CIFAR) or 3 (ImageNet)"
            )

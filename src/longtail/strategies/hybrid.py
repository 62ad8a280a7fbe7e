"""Hybrid networks (Wang et al., CVPR 2021): a contrastive branch learns features, a class-balanced
cross-entropy branch learns the classifier, and a curriculum weight moves training between them.

    L = alpha(t) * L_con(B_con) + (1 - alpha(t)) * L_CE(B_CE),   alpha(t) = 1 - (t / T)^2  (CIFAR)

B_con: an instance-sampled batch seen as two views (one with colour jitter, one without) through
the backbone and a one-hidden-layer projection head to L2-normalised features, scored by SupCon
(Hybrid-SC), PSC or MPSC (Hybrid-PSC/MPSC), or by CE on the classifier (the CE-CE ablation).
B_CE: a class-balanced batch, one view, through the backbone and the linear classifier.

BatchNorm: with ``batch_norm="joint"`` (default) the three views go through the backbone in one
forward, so BN statistics mix the instance-sampled and class-balanced batches (one pass, fastest);
``"separate"`` runs the contrastive views and the CE view in two passes, as BBN does, so each
branch's batch is normalised by its own statistics. Which reproduces the paper better is an open
ablation (``../shared/reference/hybrid-reproduction.md``); both are here to measure it.

Under torchrun each rank holds its rows of both batches; SupCon contrasts its anchors with the
views gathered from every rank (:func:`longtail.dist.distributed_contrastive`), PSC and MPSC with
their prototypes (parameters, the same on every rank), and BatchNorm sees the global batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail import dist, runtime
from longtail.data.loader import DeviceLoader
from longtail.data.stream import StreamLoader
from longtail.dist import distributed_contrastive
from longtail.errors import LongtailError, require
from longtail.losses import KCLLoss, MPSCLoss, PSCLoss, SupConLoss
from longtail.losses.masks import DrawLayout
from longtail.models.heads import ProjectionHead
from longtail.strategies.base import (
    Method,
    MethodParts,
    ProjectedConfig,
)
from longtail.strategies.registry import register

if TYPE_CHECKING:
    from longtail.config import Config

SAMPLERS = ("random", "class_balanced", "sqrt")


@dataclass
class HybridConfig(ProjectedConfig):
    """strategy.* of hybrid: the contrastive branch, the curriculum and the two batch streams."""

    name: str = "hybrid"
    contrastive: str = "supcon"  # branch loss: supcon | psc | mpsc | ce (the CE-CE ablation)
    temperature: float = 0.1  # SC 0.1; PSC 1.0 on CIFAR-10, 0.1 on CIFAR-100 (Hybrid §4.2)
    num_prototypes: int = 2  # MPSC prototypes per class
    # SC: at most this many same-class positives drawn per anchor each step, besides its other
    # view (the Hybrid paper's iNat setting, value not given); null: every same-class view (SupCon)
    positives: int | None = None
    curriculum: str = "parabolic"  # parabolic 1-(t/T)^2 (CIFAR) | linear 1-t/T (iNat) | fixed
    fixed_alpha: float = 0.5  # alpha when curriculum=fixed (the no-curriculum ablation)
    batch_norm: str = "joint"  # joint: one forward of all views | separate: one per branch
    ce_sampler: str = "class_balanced"  # the CE branch's sampler
    contrastive_sampler: str = "random"  # the contrastive branch's (Table 5: PSC-CB)
    jitter_views: list[bool] = field(
        default_factory=lambda: [False, True]
    )  # views with augment.jitter


def curriculum_alpha(epoch: int, epochs: int, cfg: HybridConfig) -> float:
    """alpha(t) at 0-based ``epoch`` of ``epochs``: parabolic 1 - (t/T)^2, linear 1 - t/T, or fixed."""
    t = epoch / epochs
    if cfg.curriculum == "parabolic":
        return 1.0 - t**2
    if cfg.curriculum == "linear":
        return 1.0 - t
    return cfg.fixed_alpha


def two_view_layout(n: int, world: int, rank: int) -> DrawLayout:
    """Rank ``rank``'s [2n anchors, 2nW refs] in one process's [2N, 2N] draw (N = nW).

    A rank stacks its views [v1; v2] (n rows each) and the gather puts the ranks' stacks in rank
    order; one process stacks [v1; v2] of the whole batch. Row ``view * n + i`` of rank q is
    row ``view * N + q * n + i`` of one process's stack.
    """
    total = n * world

    def stack_of(q: int) -> Tensor:
        i = torch.arange(n)
        return torch.cat([q * n + i, total + q * n + i])

    cols = torch.cat([stack_of(q) for q in range(world)])
    return DrawLayout(stack_of(rank), cols, (2 * total, 2 * total))


class HybridNet(nn.Module):
    """Backbone + projection head + the contrastive loss (which holds PSC/MPSC prototypes).

    ``forward`` is the backbone's classifier path, so evaluation treats it like any model.
    """

    def __init__(self, backbone: nn.Module, cfg: HybridConfig, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.projector = ProjectionHead(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_batch_norm)
        self.contrastive: nn.Module | None
        if cfg.contrastive == "supcon" and cfg.positives is not None:  # P drawn positives
            self.contrastive = KCLLoss(k=cfg.positives, temperature=cfg.temperature)
        elif cfg.contrastive == "supcon":
            self.contrastive = SupConLoss(temperature=cfg.temperature)
        elif cfg.contrastive == "psc":
            self.contrastive = PSCLoss(num_classes, cfg.proj_dim, temperature=cfg.temperature)
        elif cfg.contrastive == "mpsc":
            self.contrastive = MPSCLoss(
                num_classes, cfg.proj_dim, cfg.num_prototypes, temperature=cfg.temperature
            )
        else:  # "ce": the CE-CE ablation, no contrastive loss
            self.contrastive = None

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]

    def pooled(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> pooled backbone features [B, F]."""
        b = self.backbone
        return b.forward_head(b.forward_features(x), pre_logits=True)  # type: ignore[no-any-return, operator]

    def classify(self, pooled: Tensor) -> Tensor:
        return self.backbone.get_classifier()(pooled)  # type: ignore[no-any-return, operator]


class HybridLoader:
    """Zips the contrastive stream (two views; instance sampling unless
    ``strategy.contrastive_sampler`` says otherwise) with the CE stream (one view, class-balanced);
    an epoch is one pass of the contrastive stream, the CE stream wraps around."""

    def __init__(
        self, contrastive: DeviceLoader | StreamLoader, ce: DeviceLoader | StreamLoader
    ) -> None:
        self.contrastive, self.ce = contrastive, ce
        self.sampler = contrastive.sampler
        self._ce_iter: Iterator[Any] | None = None

    def __len__(self) -> int:
        return len(self.contrastive)

    def _next_ce(self) -> Any:
        if self._ce_iter is None:
            self._ce_iter = iter(self.ce)
        try:
            return next(self._ce_iter)
        except StopIteration:
            self._ce_iter = iter(self.ce)
            return next(self._ce_iter)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.contrastive:
            views, y_con = batch[0], batch[1]
            x_ce, y_ce = self._next_ce()
            yield views, y_con, x_ce, y_ce

    def state_dict(self) -> dict[str, Any]:
        return {"contrastive": self.contrastive.state_dict(), "ce": self.ce.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.contrastive.load_state_dict(state["contrastive"])
        self.ce.load_state_dict(state["ce"])
        self._ce_iter = None  # the CE sampler resumes its epoch in progress on the next iter()


@register
class Hybrid(Method):
    """The hybrid method: ``alpha * L_con + (1 - alpha) * L_CE``, ``alpha`` set per epoch by the
    curriculum. A batch is ``([view1, view2], y_con, x_ce, y_ce)``."""

    config_class = HybridConfig
    supports_sam = False  # the curriculum and the positives' draw would step twice per batch
    choices = {
        "contrastive": ("supcon", "psc", "mpsc", "ce"),
        "curriculum": ("parabolic", "linear", "fixed"),
        "batch_norm": ("joint", "separate"),
        "ce_sampler": SAMPLERS,
        "contrastive_sampler": SAMPLERS,
    }
    summary = "Hybrid-SC / PSC / MPSC: contrastive features + class-balanced CE (Wang et al. 2021)"
    _pooled: Callable[[Tensor], Tensor]

    @classmethod
    def network(cls, backbone: nn.Module, cfg: HybridConfig, num_classes: int) -> nn.Module:
        return HybridNet(backbone, cfg, num_classes)

    @classmethod
    def build(cls, parts: MethodParts, cfg: HybridConfig) -> tuple[HybridLoader, Hybrid]:
        """Two streams: ``contrastive_sampler`` batches in two views (the one with
        ``jitter_views`` true gets augment.jitter), ``ce_sampler`` batches in one plain view."""
        plain = replace(parts.augment, jitter=[0.0, 0.0, 0.0, 0.0])
        views = [
            (parts.augment if jitter else plain, f"view{k + 1}")
            for k, jitter in enumerate(cfg.jitter_views)
        ]
        loader = HybridLoader(
            parts.loader(cfg.contrastive_sampler, views),
            parts.loader(cfg.ce_sampler, [(plain, "ce_view")], sampler="ce_sampler", cut=False),
        )
        draw = parts.generator("positives") if cfg.positives is not None else None
        assert isinstance(parts.net, HybridNet)
        return loader, cls(parts.net, parts.objective, cfg, parts.train.compile, draw)

    @classmethod
    def check(cls, cfg: Config) -> None:
        s = cfg.strategy
        assert isinstance(s, HybridConfig)
        if s.positives is not None and not (s.positives >= 1 and s.contrastive == "supcon"):
            raise LongtailError(
                f"strategy.positives={s.positives} applies to hybrid SC (strategy.name=hybrid,"
                " strategy.contrastive=supcon) and must be >= 1: fix it or set it to null"
            )
        if cfg.train.resample_epoch is not None or cfg.train.sampler != "random":
            raise LongtailError(
                "strategy.name=hybrid samples its own streams: set strategy.ce_sampler instead of"
                " train.sampler / train.resample_epoch"
            )
        if len(s.jitter_views) != 2:
            raise LongtailError("strategy.jitter_views takes 2 values, one per contrastive view")
        if not 0 <= s.fixed_alpha <= 1 or s.temperature <= 0:
            raise LongtailError("strategy.fixed_alpha must be in [0, 1] and temperature > 0")
        require(
            ("strategy.num_prototypes", s.num_prototypes, s.num_prototypes >= 1, ">= 1"),
            ("strategy.proj_dim", s.proj_dim, s.proj_dim >= 1, ">= 1"),
            ("strategy.proj_hidden", s.proj_hidden, s.proj_hidden >= 1, ">= 1"),
        )

    def __init__(
        self,
        net: HybridNet,
        ce_loss: nn.Module,
        cfg: HybridConfig,
        compile: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """``generator``: the positives' draw with ``strategy.positives`` (seeded; in the step
        state, so a resume continues it exactly)."""
        super().__init__()
        self.net, self.ce_loss, self.cfg = net, ce_loss, cfg
        self.generator = generator
        if isinstance(net.contrastive, KCLLoss):
            if generator is None:
                raise LongtailError("Hybrid with strategy.positives needs a seeded generator")
            net.contrastive.generator = generator
        # not a registered submodule: the compiled wrapper shares the net's parameters
        self.__dict__["_pooled"] = torch.compile(net.pooled) if compile else net.pooled
        self.alpha = 1.0

    def set_epoch(self, epoch: int, epochs: int) -> None:
        self.alpha = curriculum_alpha(epoch, epochs, self.cfg)

    def epoch_record(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    def step_state(self) -> dict[str, Any] | None:
        """The positives' draw (None without ``strategy.positives``: nothing random here)."""
        return None if self.generator is None else {"generator": self.generator.get_state()}

    def load_step_state(self, state: dict[str, Any]) -> None:
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    def _pure_contrastive(self) -> bool:
        """Fixed alpha = 1 (two-stage stage 1): the CE view is not seen at all, so BatchNorm
        statistics come from the instance-sampled views only."""
        fixed = self.cfg.curriculum == "fixed" and self.cfg.fixed_alpha >= 1.0
        return fixed and self.net.contrastive is not None

    def forward(self, batch: Any) -> dict[str, Tensor]:
        """``con`` (projections [2n, d], or logits [2n, C] for CE-CE) and ``ce`` (logits [m, C])."""
        (v1, v2), _, x_ce, _ = batch
        n = v1.shape[0]
        if self._pure_contrastive():
            return {"con": self.net.projector(self._pooled(torch.cat([v1, v2])))}
        if self.cfg.batch_norm == "joint":
            pooled = self._pooled(torch.cat([v1, v2, x_ce]))
            f_con, f_ce = pooled[: 2 * n], pooled[2 * n :]
        else:
            f_con = self._pooled(torch.cat([v1, v2]))
            f_ce = self._pooled(x_ce)
        con = (
            self.net.classify(f_con) if self.net.contrastive is None else self.net.projector(f_con)
        )
        return {"con": con, "ce": self.net.classify(f_ce)}

    def branch_losses(self, out: dict[str, Tensor], batch: Any) -> tuple[Tensor, Tensor]:
        """(L_con, L_CE), float32 scalars; L_CE is 0 when the CE view is not seen."""
        _, y_con, _, y_ce = batch
        labels = torch.cat([y_con, y_con])
        z = runtime.at_least_fp32(out["con"])
        if self.net.contrastive is None:  # CE-CE: cross-entropy on the instance-sampled views
            con = F.cross_entropy(z, labels)
        elif isinstance(self.net.contrastive, KCLLoss):  # P drawn positives + the other view
            n, world = y_con.shape[0], dist.world_size()
            own = torch.arange(n, device=labels.device) + dist.rank() * n  # unique over ranks
            ids = torch.cat([own, own])
            if world == 1:
                con = self.net.contrastive(z, labels, instance_ids=ids)
            else:  # every rank's views in rank order; the draw placed as one process's
                con = distributed_contrastive(
                    self.net.contrastive,
                    z,
                    labels,
                    instance_ids=ids,
                    ref_instance_ids=dist.gather_no_grad(ids),
                    layout=two_view_layout(n, world, dist.rank()),
                )
        elif isinstance(self.net.contrastive, SupConLoss):  # against every rank's views
            con = distributed_contrastive(self.net.contrastive, z, labels)
        else:  # PSC / MPSC contrast with prototypes (parameters): a per-anchor mean, local
            con = self.net.contrastive(z, labels)
        if "ce" not in out:
            return con, torch.zeros_like(con)
        return con, self.ce_loss(runtime.at_least_fp32(out["ce"]), y_ce)

    def losses(self, batch: Any) -> tuple[Tensor, Tensor]:
        """(L_con, L_CE) of a batch, in float32 without autocast (tests and readouts)."""
        return self.branch_losses(self(batch), batch)

    def loss(self, out: dict[str, Tensor], batch: Any, reweighted: bool = False) -> Tensor:
        con, ce = self.branch_losses(out, batch)
        return self.alpha * con + (1.0 - self.alpha) * ce

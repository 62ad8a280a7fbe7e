"""A query encoder contrasted with a labelled key queue: what KCL and MoCo v2 share.

MoCo (He et al. 2020; v2: Chen et al. 2020) and KCL stage 1 (Kang et al., ICLR 2021, "Exploring
Balanced Feature Spaces") as BalFeat's ``moco/kcl_builder.py`` (``../shared/reference/anchors.md``
§1.2): a query encoder f_q (backbone + projection head), a momentum key encoder f_k (EMA,
m = 0.999) and a FIFO queue of keys with their labels, scored by
:func:`longtail.losses.kcl_queue.kcl_queue_loss` (k drawn same-class positives; k = 0 for MoCo).

Differences from the reference, on purpose:

* the k positives are a uniform draw (the unofficial re-implementation, LTH14/targeted-supcon),
  not BalFeat's top-k over a 0/1 mask (whatever its kernel returns on ties); the draw uses a
  seeded generator kept in the step and saved in the checkpoint, so resuming is exact;
* the queue starts empty and fills as training goes (the loss uses the filled slots only; the
  very first step has only the own key, so its loss and gradient are 0). BalFeat fills the whole
  queue with forward passes before epoch 0 (``init_key_queue``); with a CIFAR queue of 4096 and
  a batch of 256 the lazy fill takes the first 16 steps;
* one device, no shuffling BN across GPUs for the keys: the key encoder's BN normalises its own
  batch (MoCo's shuffle exists to stop intra-batch leakage through BN, which matters less with
  labels and a queue of old keys).

The classifier (``backbone.fc``) is never trained, so the top-1 such a run reports is its kNN
monitor's: the number is stage 2's (cRT on the frozen backbone, ``kcl_r100_stage2.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail import dist, runtime
from longtail.errors import LongtailError, require
from longtail.losses.kcl_queue import kcl_queue_loss
from longtail.losses.masks import DrawLayout
from longtail.losses.queue import LabelledQueue
from longtail.models.heads import ProjectionHead
from longtail.models.momentum import MomentumEncoder
from longtail.strategies.base import (
    Method,
    MethodParts,
    ProjectedConfig,
    check_pretraining,
)

if TYPE_CHECKING:
    from longtail.config import Config


@dataclass
class QueueConfig(ProjectedConfig):
    """The keys of a queue method: its head, the key encoder's momentum and the queue's length."""

    proj_hidden: int = 512  # 0: a linear head (BalFeat's default); else one hidden layer (--mlp)
    queue_size: int = 4096  # labelled key queue length (BalFeat 65536 on ImageNet); >= batch
    key_momentum: float = 0.999  # EMA momentum m of the key encoder (MoCo)


class _Encoder(nn.Module):
    """backbone -> pooled features -> projection: ``[B, C, H, W] -> [B, proj_dim]`` (not normalised)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.projector = backbone, projector

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.backbone.forward_pooled(x)  # type: ignore[operator]
        return self.projector(pooled)  # type: ignore[no-any-return]


class KCLNet(nn.Module):
    """Backbone (with its classifier, for stage 2 and evaluation) + projector + key encoder + queue.

    ``projector``: ``Linear(F, proj_dim)`` when ``proj_hidden == 0`` (BalFeat's default head),
    else the one-hidden-layer MLP (``--mlp``). ``key_encoder`` is a :class:`MomentumEncoder` of
    backbone + projector (no gradient, moved by EMA only); it and ``queue`` live in the state_dict,
    so checkpoints resume exactly. ``forward`` is the backbone's classifier path.
    """

    def __init__(self, backbone: nn.Module, cfg: QueueConfig) -> None:
        super().__init__()
        self.backbone = backbone
        width = int(backbone.num_features)  # type: ignore[arg-type]
        self.projector: nn.Module = (
            nn.Linear(width, cfg.proj_dim)
            if cfg.proj_hidden == 0
            else ProjectionHead(width, cfg.proj_hidden, cfg.proj_dim, cfg.proj_batch_norm)
        )
        # MoCo: the key encoder starts as a copy of the query encoder
        self.key_encoder = MomentumEncoder(self.online(), cfg.key_momentum)
        self.queue = LabelledQueue(cfg.proj_dim, cfg.queue_size)

    def online(self) -> _Encoder:
        """The query encoder f_q as one module (sharing this net's backbone and projector)."""
        return _Encoder(self.backbone, self.projector)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)  # type: ignore[no-any-return]


class QueueContrast(Method):
    """A query encoder contrasted with a labelled key queue, on a batch ``([view1, view2], labels)``
    of instance-sampled images: KCL (``positives`` = k drawn same-class keys) and MoCo (none).
    The k-positive draw has its own seeded generator."""

    trains_classifier = False  # stage 1: the number is stage 2's (cRT on the frozen backbone)
    supports_sam = False  # the key encoder and the queue would step twice per batch
    supports_compile = False

    def __init__(
        self, net: KCLNet, cfg: QueueConfig, positives: int, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.net, self.cfg, self.positives = net, cfg, positives
        self.generator = generator

    @classmethod
    def network(cls, backbone: nn.Module, cfg: QueueConfig, num_classes: int) -> nn.Module:
        return KCLNet(backbone, cfg)

    @classmethod
    def positives_of(cls, cfg: QueueConfig) -> int:
        """k, the same-class queue keys drawn per anchor (0: MoCo)."""
        raise NotImplementedError

    @classmethod
    def build(cls, parts: MethodParts, cfg: QueueConfig) -> tuple[Any, QueueContrast]:
        views = [(parts.augment, "view1"), (parts.augment, "view2")]
        assert isinstance(parts.net, KCLNet)
        step = cls(parts.net, cfg, cls.positives_of(cfg), parts.generator("queue_draw"))
        return parts.loader("random", views), step

    @classmethod
    def check(cls, cfg: Config) -> None:
        check_pretraining(cfg, linear_head=True)
        s = cfg.strategy
        assert isinstance(s, QueueConfig)
        require(
            ("strategy.key_momentum", s.key_momentum, 0 <= s.key_momentum <= 1,
             "in [0, 1] (0.999)"),
        )  # fmt: skip
        if s.queue_size < cfg.train.batch_size:
            raise LongtailError(
                f"strategy.queue_size={s.queue_size} is below train.batch_size="
                f"{cfg.train.batch_size}: a queue must hold at least one batch of keys; raise it"
                " (e.g. 4096)"
            )

    def forward(self, batch: Any) -> tuple[Tensor, Tensor]:
        """(queries [N, d], keys [N, d] L2-normalised, float32, no gradient).

        Order as MoCo's forward: queries, the EMA step of f_k (with the weights the last optimiser
        step left), then keys.
        """
        (v1, v2), _ = batch
        queries = self.net.online()(v1)
        with torch.no_grad():
            self.net.key_encoder.update(self.net.online())
            keys = F.normalize(runtime.at_least_fp32(self.net.key_encoder(v2)), dim=1)
        return queries, keys

    def loss(self, out: tuple[Tensor, Tensor], batch: Any, reweighted: bool = False) -> Tensor:
        """The KCL loss against the queue as it was (float32 scalar); then the keys join it.

        Under torchrun a rank's anchors are its rows of the global batch: the k-positive draw is
        the global draw's rows, and every rank enqueues the keys of all ranks. Each anchor counts
        (its own key is a positive), so DDP's average of the local means is the global mean.
        """
        queries, keys = out
        labels = batch[1]
        queue_keys, queue_labels = self.net.queue.contents()
        n, world = labels.shape[0], dist.world_size()
        loss = kcl_queue_loss(
            runtime.at_least_fp32(queries),
            labels,
            keys,
            queue_keys,
            queue_labels,
            self.positives,
            self.cfg.temperature,
            self.generator,
            DrawLayout.row_block(dist.rank() * n, n, world * n, len(queue_labels))
            if world > 1
            else None,
        )
        # every rank's keys, in rank order: the queue one process would hold, on every rank
        self.net.queue.enqueue(dist.gather_no_grad(keys), dist.gather_no_grad(labels))
        return loss

    def step_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_step_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

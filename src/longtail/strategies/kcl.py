"""KCL stage 1 (Kang et al., ICLR 2021, "Exploring Balanced Feature Spaces"): MoCo with k positives.

As BalFeat's ``moco/kcl_builder.py`` (``../shared/reference/anchors.md`` §1.2): a query encoder
f_q (backbone + projection head), a momentum key encoder f_k (EMA, m = 0.999) and a FIFO queue of
keys with their labels. For a batch of N instance-sampled images seen as two views:

    q_i = normalise(f_q(x_i^a)),   k_i = normalise(f_k(x_i^b))   (no gradient)
    L_i = -1/(1+k'_i) sum_{p in {k_i} u S_i} log( exp(q_i.p / tau) / sum_{a in {k_i} u Q} exp(q_i.a / tau) )

Q is the queue (before this batch is enqueued) and S_i up to k queue slots with label y_i, drawn
uniformly at random (k'_i <= k when the queue holds fewer). The denominator is the own key and the
whole queue: the batch's other keys are not contrasted (they are enqueued after the loss), and
same-class slots not drawn stay as negatives (BalFeat's default "v1"). tau = 0.07, k = 6.

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

Stage 1's classifier (``backbone.fc``) is never trained, so the top-1 a stage-1 run reports is
meaningless: the number is stage 2's (cRT on the frozen backbone, ``kcl_r100_stage2.yaml``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail import dist, runtime
from longtail.config import StrategyConfig
from longtail.losses.kernel import masked_contrastive, mean_over_valid
from longtail.losses.masks import DrawLayout, cosine_logits, sample_k_positives, unit_rows
from longtail.losses.queue import LabelledQueue
from longtail.models.heads import ProjectionHead
from longtail.models.momentum import MomentumEncoder


def kcl_queue_loss(
    queries: Tensor,
    labels: Tensor,
    keys: Tensor,
    queue_keys: Tensor,
    queue_labels: Tensor,
    k: int,
    temperature: float,
    generator: torch.Generator | None,
    layout: DrawLayout | None = None,
) -> Tensor:
    """BalFeat's KCL loss over [own key, queue] (module docstring); a scalar.

    queries [N, D] (with gradient), labels [N], keys [N, D] (the key encoder's, same images),
    queue_keys [K, D], queue_labels [K] (K may be 0). Features are normalised here. Consumes
    one ``torch.rand`` [N, K] from ``generator`` (the k-positive draw; none when k = 0, MoCo), or
    the larger draw that ``layout`` places these rows in (a rank's part of the global draw).
    Every anchor has its own key as a positive, so the mean is over all N anchors.
    """
    q = unit_rows(queries)
    own = (q * unit_rows(keys)).sum(1, keepdim=True) / temperature  # [N, 1]
    logits = torch.cat([own, cosine_logits(q, unit_rows(queue_keys), temperature)], dim=1)
    same_class = labels[:, None] == queue_labels[None, :]  # [N, K]
    positives = torch.cat(
        [torch.ones_like(same_class[:, :1]), sample_k_positives(same_class, k, generator, layout)],
        dim=1,
    )
    loss, valid = masked_contrastive(logits, positives, torch.ones_like(positives))
    return mean_over_valid(loss, valid)


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

    def __init__(self, backbone: nn.Module, cfg: StrategyConfig) -> None:
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


class KCL(nn.Module):
    """The KCL (and MoCo, k = 0) method on a batch ``([view1, view2], labels)`` of
    instance-sampled images; the k-positive draw has its own seeded generator."""

    def __init__(self, net: KCLNet, cfg: StrategyConfig, device: torch.device, seed: int) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg
        self.generator = torch.Generator(device=device).manual_seed(seed)

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
            self.cfg.k,
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

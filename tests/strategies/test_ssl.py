"""SSL pre-training: the losses by hand, MoCo as KCL with k = 0 (end-to-end runs: test_ssl_runs.py)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from longtail.losses.kcl_queue import kcl_queue_loss
from longtail.models import create_model
from longtail.strategies.pretraining import ContrastiveNet
from longtail.strategies.queue_contrast import KCLNet, QueueContrast
from longtail.strategies.simclr import SimCLRConfig
from longtail.strategies.simsiam import SimSiamConfig, SimSiamNet
from longtail.train.build import TrainingParts
from ssl_helpers import ssl_parts

CPU = torch.device("cpu")
HEADS = SimCLRConfig(proj_hidden=16, proj_dim=8, temperature=0.2)
SIMSIAM_HEADS = SimSiamConfig(proj_hidden=16, proj_dim=8, pred_hidden=4)


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=3, in_chans=1, width=0.25)


def _views() -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(6, 1, 12, 12, generator=g) for _ in range(2)]
    return views, torch.tensor([0, 0, 1, 2, 1, 0])


def _pooled(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    b: Any = net.backbone
    return b.forward_head(b.forward_features(x), pre_logits=True)  # type: ignore[no-any-return]


WEIGHTS = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0, 1.5])


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["plain", "weighted"])
def test_simsiam_loss_matches_a_hand_computation(weights: torch.Tensor | None) -> None:
    net = SimSiamNet(_backbone(), SIMSIAM_HEADS).train()
    ref, joint = copy.deepcopy(net), copy.deepcopy(net)
    views, labels = _views()
    got = net.loss(views, labels, weights)
    # each view through the network on its own (BatchNorm statistics per view)
    z1, z2 = (ref.projector(_pooled(ref, v)) for v in views)
    p1, p2 = ref.predictor(z1), ref.predictor(z2)
    per = 0.5 * -F.cosine_similarity(p1, z2.detach()) + 0.5 * -F.cosine_similarity(p2, z1.detach())
    expected = per.mean() if weights is None else (weights * per).sum() / per.shape[0]
    assert got.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    got.backward()
    expected.backward()  # the stop-gradient sits where eq. 3 puts it: the gradients agree
    for (name, a), b in zip(net.named_parameters(), ref.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None and b.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    classifier: Any = net.backbone.fc
    assert classifier.weight.grad is None  # the classifier is not part of the loss
    # one joint forward of both views would mix their BatchNorm statistics: another number
    z = joint.projector(_pooled(joint, torch.cat(views)))
    zj1, zj2 = z.chunk(2)
    mixed = 0.5 * -F.cosine_similarity(joint.predictor(zj1), zj2) - 0.5 * F.cosine_similarity(
        joint.predictor(zj2), zj1
    )
    assert not torch.allclose(mixed.mean(), per.mean(), atol=1e-4)


def _contrastive_loop(
    z: torch.Tensor,
    positives_of: Callable[[int], list[int]],
    tau: float,
    weights: list[float] | None,
) -> float:
    """L_out anchor by anchor (SupCon eq. 2), the denominator every entry but the anchor."""
    z = F.normalize(z.double(), dim=1)
    n = z.shape[0]
    total, anchors = 0.0, 0
    for i in range(n):
        positives = positives_of(i)
        if not positives:
            continue
        sim = [float(z[i] @ z[a]) / tau for a in range(n)]
        log_denominator = math.log(sum(math.exp(sim[a]) for a in range(n) if a != i))
        loss_i = sum(log_denominator - sim[p] for p in positives) / len(positives)
        total += (1.0 if weights is None else weights[i]) * loss_i
        anchors += 1
    return total / anchors


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["plain", "weighted"])
@pytest.mark.parametrize("use_labels", [False, True], ids=["simclr", "supcon"])
def test_contrastive_loss_matches_a_loop(weights: torch.Tensor | None, use_labels: bool) -> None:
    net = ContrastiveNet(_backbone(), HEADS, use_labels=use_labels).train()
    ref = copy.deepcopy(net)
    views, labels = _views()
    got = net.loss(views, labels, weights)
    z = ref.projector(_pooled(ref, torch.cat(views))).detach()  # one forward, view-major rows
    b = labels.shape[0]
    both = labels.repeat(2).tolist()

    def positives_of(i: int) -> list[int]:
        if use_labels:  # SupCon: every other same-class view
            return [j for j in range(2 * b) if j != i and both[j] == both[i]]
        return [(i + b) % (2 * b)]  # NT-Xent: the other view of the same image

    anchor_weights = None if weights is None else weights.repeat(2).tolist()
    expected = _contrastive_loop(z, positives_of, HEADS.temperature, anchor_weights)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_supcon_with_distinct_labels_is_simclr() -> None:
    views, _ = _views()
    distinct = torch.arange(6)
    simclr = ContrastiveNet(_backbone(), HEADS, use_labels=False)
    supcon = ContrastiveNet(_backbone(), HEADS, use_labels=True)
    supcon.load_state_dict(simclr.state_dict())
    a, b = simclr.loss(views, distinct, None), supcon.loss(views, distinct, None)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def _infonce_loop(q: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor, tau: float) -> float:
    """MoCo's InfoNCE (He et al. 2020, eq. 1) anchor by anchor: the own key against the queue."""
    q, keys, queue = (F.normalize(t.double(), dim=1) for t in (q, keys, queue))
    total = 0.0
    for i in range(q.shape[0]):
        own = float(q[i] @ keys[i]) / tau
        negatives = [float(q[i] @ queue[j]) / tau for j in range(queue.shape[0])]
        total += math.log(math.exp(own) + sum(math.exp(s) for s in negatives)) - own
    return total / q.shape[0]


def test_kcl_queue_loss_with_k0_is_infonce() -> None:
    g = torch.Generator().manual_seed(4)
    q, keys, queue = (
        torch.randn(5, 8, generator=g),
        torch.randn(5, 8, generator=g),
        torch.randn(9, 8, generator=g),
    )
    labels, queue_labels = torch.tensor([0, 1, 1, 2, 0]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    expected = _infonce_loop(q, keys, queue, 0.2)
    for y in (labels, (labels + 1) % 3):  # same-class queue entries stay negatives
        got = kcl_queue_loss(
            q, y, keys, queue, queue_labels, 0, 0.2, torch.Generator().manual_seed(0)
        )
        assert got.item() == pytest.approx(expected, rel=1e-5)
    same = torch.ones(4, 8)  # identical embeddings: every logit equal, loss log(1 + K)
    got = kcl_queue_loss(same, labels[:4], same, torch.ones(9, 8), queue_labels, 0, 0.2, None)
    assert got.item() == pytest.approx(math.log(10), rel=1e-6)


MOCO = ["strategy.name=moco", "strategy.queue_size=48", "strategy.temperature=0.2"]
KCL = ["strategy.name=kcl", "strategy.queue_size=48", "strategy.temperature=0.2", "strategy.k=2"]


def _fill_queue(parts: TrainingParts, steps: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run ``steps`` steps; return the next batch."""
    batches = iter(parts.loader)
    for _ in range(steps):
        parts.step(next(batches), lr=0.05)
    return next(batches)  # type: ignore[return-value]


def test_moco_step_is_infonce_over_own_key_and_queue(idx_root: Path, tmp_path: Path) -> None:
    parts = ssl_parts(idx_root, tmp_path, *MOCO, "strategy.key_momentum=0.9")
    step, net = parts.step, parts.model
    method = step.method
    assert isinstance(method, QueueContrast) and isinstance(net, KCLNet)
    assert method.positives == 0  # the queue method with no sampled positives
    (v1, v2), labels = _fill_queue(parts, 3)
    assert len(net.queue) == 48  # 3 batches of 16 keys
    queue, _ = net.queue.contents()
    ref = copy.deepcopy(net)
    online = dict(ref.online().named_parameters())
    with torch.no_grad():
        for name, p in ref.key_encoder.encoder.named_parameters():
            p.copy_(0.9 * p + 0.1 * online[name])  # MoCo eq. 2 before the keys are computed
        keys = F.normalize(ref.key_encoder.encoder(v2).double(), dim=1)
        q = F.normalize(ref.online()(v1).double(), dim=1)
    expected = _infonce_loop(q, keys, queue, 0.2)
    got = step.loss(([v1, v2], labels))
    assert got.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("strategy", "labels_matter"), [(MOCO, False), (KCL, True)])
def test_labels_matter_for_kcl_but_not_for_moco(
    idx_root: Path, tmp_path: Path, strategy: list[str], labels_matter: bool
) -> None:
    parts = ssl_parts(idx_root, tmp_path, *strategy)
    step, net = parts.step, parts.model
    method = step.method
    assert isinstance(method, QueueContrast)
    views, labels = _fill_queue(parts, 3)
    state, draw = copy.deepcopy(net.state_dict()), method.generator.get_state()
    losses = []
    for y in (labels, (labels + 1) % 10):  # every image relabelled
        net.load_state_dict(state)
        method.generator.set_state(draw)
        losses.append(step.loss((views, y)).item())
    assert (losses[0] != losses[1]) == labels_matter, losses

"""rwSAM's example weights (schedule, closed forms, state) and one (rw)SAM pre-training step by hand."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

import longtail.strategies.rwsam as rwsam
from longtail.config import SamConfig, load_config
from longtail.errors import LongtailError
from longtail.models import create_model
from longtail.optim.sample_weights import kde_weights
from longtail.optim.stepper import Stepper
from longtail.strategies.pretraining import Pretrain
from longtail.strategies.rwsam import ExampleWeights
from longtail.strategies.simsiam import SimSiamConfig, SimSiamNet
from ssl_helpers import pooled_by_hand
from tiny_runs import tiny_run

CPU = torch.device("cpu")


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet20", num_classes=3, in_chans=1, width=0.25)


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    return torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)


def _unit_scale(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0  # mean 0, std 1 in pooled_by_hand's terms


LABELS = torch.tensor([0] * 12 + [1] * 6 + [2] * 2)
COUNTS = [12, 6, 2]


def _weights(
    cfg: SamConfig, backbone: torch.nn.Module, labels: torch.Tensor = LABELS
) -> ExampleWeights:
    return ExampleWeights(cfg, _images(20), labels, COUNTS, backbone, _unit_scale, batch_size=7)


KDE = SamConfig(rho=0.5, weights="kde", refresh_every=2, power=0.5, neighbors=3, max_weight=4.0)


def _kde_reference(backbone: torch.nn.Module, cfg: SamConfig) -> torch.Tensor:
    feats = pooled_by_hand(backbone, _images(20), [0.0], [1.0])
    return kde_weights(feats, power=cfg.power, neighbors=cfg.neighbors, max_weight=cfg.max_weight)


def test_kde_weights_are_refreshed_on_schedule_from_the_current_backbone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backbone = _backbone()
    weights = _weights(KDE, backbone)
    calls: list[int] = []
    epoch = -1

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(epoch)
        return kde_weights(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rwsam, "kde_weights", counting)
    seen = {}
    for epoch in range(7):
        if epoch == 3:  # the backbone learns between two estimates
            with torch.no_grad():
                backbone.conv1.weight.mul_(-2.0)  # type: ignore[union-attr,operator]
        weights.set_epoch(epoch)
        seen[epoch] = weights.values.clone()
    assert calls == [2, 4, 6]  # epochs refresh_every, 2 refresh_every, ...; never epoch 0
    assert torch.equal(seen[0], torch.ones(20)) and torch.equal(seen[1], torch.ones(20))
    assert torch.equal(seen[2], seen[3])  # kept until the next estimate
    assert not torch.allclose(seen[2], seen[4])
    assert torch.allclose(seen[4], _kde_reference(backbone, KDE), atol=1e-5)
    assert seen[4].mean().item() == pytest.approx(1.0, abs=1e-5)
    assert float(seen[4].max()) <= KDE.max_weight + 1e-5


def test_kde_weights_match_the_estimator_and_ignore_labels() -> None:
    backbone = _backbone()
    a, b = _weights(KDE, backbone), _weights(KDE, backbone, LABELS.flip(0))
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.allclose(a.values, _kde_reference(backbone, KDE), atol=1e-5)
    assert torch.equal(a.values, b.values)  # label-free: the labels are read by summary() only
    batch = a(torch.tensor([19, 0, 5]))
    assert a.active and batch is not None and torch.equal(batch, a.values[[19, 0, 5]])


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_label_weights_are_the_closed_form_from_the_start(power: float) -> None:
    cfg = SamConfig(rho=0.5, weights="label", power=power, refresh_every=1)
    weights = _weights(cfg, _backbone())
    raw = torch.tensor([COUNTS[y] ** -power for y in LABELS.tolist()], dtype=torch.float64)
    expected = (raw / raw.mean()).float()
    for epoch in (0, 1, 5):
        weights.set_epoch(epoch)
        assert torch.allclose(weights.values, expected, atol=1e-6)
    record = weights.summary()  # 3 classes: head = class 0, tail = class 2 (30% rounded up)
    assert record["rw_weight_max"] == pytest.approx(float(expected.max()), abs=1e-4)
    assert record["rw_weight_rare_frequent"] == pytest.approx((12 / 2) ** power, abs=1e-4)


def test_summary_uses_few_and_many_above_twenty_classes() -> None:
    counts = [150] * 5 + [50] * 10 + [10] * 10  # many: 0..4, medium, few: 15..24
    labels = torch.repeat_interleave(torch.arange(25), torch.tensor(counts))
    cfg = SamConfig(rho=0.5, weights="label")
    weights = ExampleWeights(
        cfg, torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels, counts, _backbone(),
        _unit_scale, batch_size=8,
    )  # fmt: skip
    mean_inverse = 25 / len(labels)  # mean over examples of 1 / n_y = C / N
    record = weights.summary()
    assert record["rw_weight_rare_frequent"] == pytest.approx(150 / 10, abs=1e-3)
    assert record["rw_weight_max"] == pytest.approx((1 / 10) / mean_inverse, abs=1e-4)


def test_plain_sam_has_no_weights() -> None:
    weights = _weights(SamConfig(rho=0.5), _backbone())
    assert not weights.active and weights(torch.arange(4)) is None


def test_state_dict_round_trip() -> None:
    source = _weights(KDE, _backbone())
    source.set_epoch(2)
    state = source.state_dict()
    assert state["values"].device.type == "cpu" and not state["values"].requires_grad
    target = _weights(KDE, _backbone())
    assert torch.equal(target.values, torch.ones(20))
    target.load_state_dict(copy.deepcopy(state))
    assert torch.equal(target.values, source.values)
    target.set_epoch(3)  # no estimate at epoch 3: the loaded weights stay
    assert torch.equal(target.values, source.values)


def _views() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    indices = torch.tensor([3, 19, 12, 0, 18, 7])
    return [torch.randn(6, 1, 12, 12, generator=g) for _ in range(2)], LABELS[indices], indices


def _sam_by_hand(
    net: SimSiamNet, batch: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor],
    weights: torch.Tensor | None, rho: float, lr: float,
) -> tuple[float, dict[str, torch.Tensor]]:  # fmt: skip
    """SAM (Foret et al. eq. 2) with rwSAM's split: e from the weighted loss, the update's
    gradient from the plain loss at w + e, then plain SGD at w. Returns (loss, BN buffers after
    the first pass)."""
    views, labels, _ = batch
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(net.loss(views, labels, weights), params, allow_unused=True)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    originals = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.add_(rho * g / norm)
    loss = net.loss(views, labels, None)
    update = torch.autograd.grad(loss, params, allow_unused=True)
    with torch.no_grad():
        for p, original, g in zip(params, originals, update, strict=True):
            p.copy_(original if g is None else original - lr * g)
    return loss.item(), buffers


@pytest.mark.parametrize("kind", ["label", "none"])
def test_pretrain_step_is_rwsam_by_hand(kind: str) -> None:
    heads = SimSiamConfig(proj_hidden=16, proj_dim=8, pred_hidden=4)
    net = SimSiamNet(_backbone(), heads).train()
    ref = copy.deepcopy(net)
    sam = SamConfig(rho=0.5, weights=kind)
    example_weights = _weights(sam, net.backbone)
    opt = torch.optim.SGD(net.parameters(), lr=0.3)
    step = Stepper(Pretrain(net, example_weights), opt, CPU, None, False, sam=sam)
    batch = _views()
    w = example_weights.values[batch[2]] if kind == "label" else None
    expected_loss, first_pass_buffers = _sam_by_hand(ref, batch, w, rho=0.5, lr=0.3)
    assert step(batch, lr=0.3).item() == pytest.approx(expected_loss, rel=1e-5)
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name
    for name, buf in net.named_buffers():  # the perturbed pass left BatchNorm statistics alone
        assert torch.equal(buf, first_pass_buffers[name]), name
    assert step.epoch_record() == ({} if kind == "none" else example_weights.summary())


def test_weights_reach_the_perturbation() -> None:
    heads = SimSiamConfig(proj_hidden=16, proj_dim=8, pred_hidden=4)
    nets = [SimSiamNet(_backbone(), heads).train() for _ in range(2)]
    for net, kind in zip(nets, ("label", "none"), strict=True):
        sam = SamConfig(rho=0.5, weights=kind)
        opt = torch.optim.SGD(net.parameters(), lr=0.3)
        Stepper(Pretrain(net, _weights(sam, net.backbone)), opt, CPU, None, False, sam=sam)(
            _views(), 0.3
        )
    a, b = (dict(n.named_parameters()) for n in nets)
    assert any(not torch.allclose(a[k], b[k]) for k in a)


UNUSED = Path("unused")  # validation never reads the data


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["strategy.name=simsiam", "sam.weights=kde"], "need a perturbation"),
        (["strategy.name=simsiam", "sam.adaptive=true"], "need a perturbation"),
        (["strategy.name=kcl", "sam.rho=0.5"], "strategy.name=kcl"),
        (["strategy.name=moco", "sam.rho=0.5"], "strategy.name=moco"),
        (["strategy.name=hybrid", "sam.rho=0.5"], "strategy.name=hybrid"),
        (["sam.rho=0.5", "sam.weights=kde"], "re-weights a pre-training loss"),
        (["sam.rho=0.5", "sam.weights=label"], "re-weights a pre-training loss"),
        (["strategy.name=simsiam", "sam.rho=0.5", "sam.refresh_every=0"], "refresh_every"),
        (["strategy.name=simsiam", "sam.rho=0.5", "sam.bandwidth=-1"], "sam.bandwidth"),
        (["strategy.name=simsiam", "sam.rho=-1"], "sam.rho"),
    ],
)
def test_bad_sam_settings_are_one_line(extra: list[str], match: str) -> None:
    with pytest.raises(LongtailError, match=match) as err:
        load_config(None, tiny_run(UNUSED, *extra))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "extra",
    [
        ["sam.rho=0.05"],  # plain SAM on a supervised run
        ["strategy.name=simclr", "sam.rho=0.5", "sam.weights=kde"],
        ["strategy.name=supcon", "sam.rho=0.5", "sam.adaptive=true", "sam.weights=label"],
    ],
)
def test_good_sam_settings_load(extra: list[str]) -> None:
    load_config(None, tiny_run(UNUSED, *extra))

"""KCL stage 1: the queue loss against a loop, one step by hand, EMA, queue, resume, and stage 2."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.losses.kcl_queue import kcl_queue_loss
from longtail.models import create_model
from longtail.optim.stepper import Stepper
from longtail.strategies.kcl import KCL as KCLMethod
from longtail.strategies.kcl import KCLConfig
from longtail.strategies.queue_contrast import KCLNet
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import resume, train
from tiny_runs import tiny_run


def _loop_loss(
    q: torch.Tensor,
    y: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    queue_y: torch.Tensor,
    k: int,
    tau: float,
    draw: torch.Tensor,
) -> float:
    """The KCL loss anchor by anchor: own key + the k same-class slots with the largest ``draw``."""
    total, n = 0.0, q.shape[0]
    for i in range(n):
        qi = F.normalize(q[i].double(), dim=0)
        own = float(qi @ F.normalize(keys[i].double(), dim=0)) / tau
        slots = [float(qi @ F.normalize(queue[j].double(), dim=0)) / tau for j in range(len(queue))]
        same = [j for j in range(len(queue)) if queue_y[j] == y[i]]
        chosen = sorted(same, key=lambda j: -float(draw[i, j]))[:k]
        log_z = math.log(math.exp(own) + sum(math.exp(s) for s in slots))
        positives = [own] + [slots[j] for j in chosen]
        total += sum(log_z - p for p in positives) / len(positives)
    return total / n


@pytest.mark.parametrize("k", [1, 2, 100])
def test_queue_loss_matches_a_loop(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    q, keys = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    queue = torch.randn(12, 8, generator=g)
    y, queue_y = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0])
    draw = torch.rand(5, 12, generator=torch.Generator().manual_seed(7))  # what the loss draws
    got = kcl_queue_loss(q, y, keys, queue, queue_y, k, 0.2, torch.Generator().manual_seed(7))
    assert got.item() == pytest.approx(
        _loop_loss(q, y, keys, queue, queue_y, k, 0.2, draw), rel=1e-5
    )
    # an empty queue leaves only the own key: softmax over one entry, loss 0
    empty = kcl_queue_loss(q, y, keys, queue[:0], queue_y[:0], k, 0.2, None)
    assert empty.item() == 0.0


def _net(queue_size: int = 18, momentum: float = 0.9) -> tuple[KCLNet, KCLConfig]:
    torch.manual_seed(0)
    cfg = KCLConfig(
        k=2,
        temperature=0.5,
        queue_size=queue_size,
        key_momentum=momentum,
        proj_hidden=16,
        proj_dim=8,
    )
    backbone = create_model("resnet20", num_classes=3, in_chans=1, width=0.25)
    return KCLNet(backbone, cfg), cfg


def _batches(n: int) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        ([torch.randn(6, 1, 12, 12, generator=g) for _ in range(2)], torch.arange(6) % 3)
        for _ in range(n)
    ]


def test_steps_match_a_hand_computation_and_fill_the_queue() -> None:
    net, cfg = _net()
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5, momentum=0.0)
    method = KCLMethod(net, cfg, cfg.k, torch.Generator().manual_seed(3))
    step = Stepper(method, opt, torch.device("cpu"), None, False)
    draws = torch.Generator().manual_seed(3)  # the step's generator, replayed
    queue_keys, queue_y = torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)
    for t, batch in enumerate(_batches(4)):
        (v1, v2), y = batch
        ref = copy.deepcopy(net)
        online = dict(ref.online().named_parameters())
        key_params = dict(ref.key_encoder.encoder.named_parameters())
        with torch.no_grad():
            expected_key_params = {
                n: 0.9 * p + 0.1 * online[n] for n, p in key_params.items()
            }  # MoCo eq. 2, by hand
            for n, p in key_params.items():
                p.copy_(expected_key_params[n])
            keys = F.normalize(ref.key_encoder.encoder(v2), dim=1)
            q = ref.online()(v1)
        draw = torch.rand(6, len(queue_keys), generator=draws)
        expected = _loop_loss(q, y, keys, queue_keys, queue_y, 2, 0.5, draw)
        loss = step(batch, lr=0.5)
        assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
        if t == 0:
            assert loss.item() == 0.0  # empty queue: only the own key
        # the key encoder moved by EMA only: never a gradient, and exactly eq. 2
        for n, p in net.key_encoder.encoder.named_parameters():
            assert p.grad is None and not p.requires_grad
            assert torch.allclose(p, expected_key_params[n], atol=1e-6)
        # FIFO: the newest 18 keys (3 batches of 6) and their labels
        queue_keys = torch.cat([queue_keys, keys])[-18:]
        queue_y = torch.cat([queue_y, y])[-18:]
        stored_keys, stored_y = net.queue.contents()
        wrapped = 6 * max(0, t - 2)  # slot order: the 4th batch overwrote slots 0..5
        assert torch.allclose(stored_keys, queue_keys.roll(wrapped, dims=0), atol=1e-6)
        assert torch.equal(stored_y, queue_y.roll(wrapped, dims=0))
    assert net.queue.is_full and int(net.queue.ptr) == 6


def test_key_encoder_and_queue_are_in_the_state_dict() -> None:
    net, _ = _net()
    keys = set(net.state_dict())
    assert {"queue.keys", "queue.labels", "queue.ptr"} <= keys
    assert any(k.startswith("key_encoder.encoder.backbone.") for k in keys)
    assert any(k.startswith("key_encoder.encoder.projector.") for k in keys)
    cfg = KCLConfig(proj_hidden=0, proj_dim=8)
    linear = KCLNet(create_model("resnet20", num_classes=3, in_chans=1, width=0.25), cfg)
    assert isinstance(linear.projector, torch.nn.Linear)  # BalFeat's default head


def _overrides(idx_root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_run(
        idx_root,
        "schedule.warmup_epochs=0",  # a planned length the resumed run shares
        f"out_dir={out}",
        *extra,
    )


KCL = [
    "strategy.name=kcl",
    "strategy.k=2",
    "strategy.queue_size=40",
    "strategy.temperature=0.07",
    "strategy.proj_hidden=0",
    "strategy.proj_dim=16",
]
CRT = [
    "strategy.name=decoupled",
    "init.freeze=backbone",
    "init.reset_classifier=true",
    "train.sampler=class_balanced",
]


def _model(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def kcl_stage1(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kcl1")
    return train(load_config(None, _overrides(idx_root, out, "train.epochs=2", *KCL)))


def test_kcl_resume_is_exact(idx_root: Path, kcl_stage1: Path, tmp_path: Path) -> None:
    half = train(load_config(None, _overrides(idx_root, tmp_path, "train.epochs=1", *KCL)))
    resume(half, ["train.epochs=2"])
    a, b = _model(kcl_stage1), _model(half)
    assert a.keys() == b.keys() and "queue.keys" in a
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights, key encoder, queue
    final = json.loads((kcl_stage1 / "final.json").read_text())
    evaluated = evaluate_run(kcl_stage1)
    assert evaluated["knn_top1"] == final["knn_top1"] and "top1" not in evaluated


def test_crt_from_a_kcl_run_keeps_its_backbone(
    idx_root: Path, kcl_stage1: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        None, _overrides(idx_root, tmp_path, f"init.run={kcl_stage1}", "train.epochs=1", *CRT)
    )
    crt = train(cfg)
    source, after = _model(kcl_stage1), _model(crt)
    backbone = {k[len("backbone.") :]: v for k, v in source.items() if k.startswith("backbone.")}
    assert set(backbone) == set(after)
    frozen = [k for k in backbone if not k.startswith("fc.")]
    assert all(torch.equal(backbone[k], after[k]) for k in frozen)  # params and BN buffers
    assert not torch.equal(backbone["fc.weight"], after["fc.weight"])
    final = json.loads((crt / "final.json").read_text())
    assert final["frozen_tensors_unchanged"] == len(frozen)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["strategy.queue_size=8"], "queue_size=8 is below"),
        (["train.sampler=class_balanced"], "train.sampler=random"),
        (["strategy.k=0"], "strategy.k=0 must be"),
    ],
)
def test_bad_kcl_settings_are_one_line(
    idx_root: Path, tmp_path: Path, extra: list[str], match: str
) -> None:
    with pytest.raises(LongtailError, match=match) as err:
        load_config(None, _overrides(idx_root, tmp_path, *KCL, *extra))
    assert "\n" not in str(err.value)

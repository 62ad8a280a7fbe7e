"""Hybrid networks: curriculum, the two-branch loss against a hand computation, BN modes, runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.losses import SupConLoss
from longtail.models import create_model
from longtail.optim.stepper import Stepper
from longtail.strategies.hybrid import Hybrid, HybridConfig, HybridNet, curriculum_alpha
from longtail.train.build import build_training
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import resume, train
from tiny_runs import tiny_run


def test_curriculum() -> None:
    parabolic = HybridConfig(curriculum="parabolic")
    assert [curriculum_alpha(e, 4, parabolic) for e in range(4)] == [
        1.0,
        1 - 1 / 16,
        0.75,
        1 - 9 / 16,
    ]
    linear = HybridConfig(curriculum="linear")
    assert [curriculum_alpha(e, 4, linear) for e in range(4)] == [1.0, 0.75, 0.5, 0.25]
    assert curriculum_alpha(3, 4, HybridConfig(curriculum="fixed", fixed_alpha=0.3)) == 0.3


def _net(contrastive: str = "supcon", batch_norm: str = "joint") -> tuple[HybridNet, HybridConfig]:
    torch.manual_seed(0)
    cfg = HybridConfig(contrastive=contrastive, batch_norm=batch_norm, proj_hidden=16, proj_dim=8)
    backbone = create_model("resnet20", num_classes=3, in_chans=1, width=0.25)
    return HybridNet(backbone, cfg, 3), cfg


def _batch() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(6, 1, 12, 12, generator=g) for _ in range(2)]
    return (
        views,
        torch.tensor([0, 0, 1, 1, 2, 2]),
        torch.randn(6, 1, 12, 12, generator=g),
        torch.arange(6) % 3,
    )


def test_losses_match_a_hand_computation() -> None:
    net, cfg = _net()
    step = Hybrid(net, torch.nn.CrossEntropyLoss(), cfg)
    batch = _batch()
    (v1, v2), y_con, x_ce, y_ce = batch
    con, ce = step.losses(batch)
    pooled = net.pooled(torch.cat([v1, v2, x_ce]))  # joint: one forward, BN sees all three views
    z = net.projector(pooled[:12])
    assert torch.allclose(con, SupConLoss(0.1)(z, torch.cat([y_con, y_con])), atol=1e-6)
    assert torch.allclose(ce, F.cross_entropy(net.classify(pooled[12:]), y_ce), atol=1e-6)


def test_drawn_positives_are_supcon_when_they_cover_the_class_and_fewer_otherwise() -> None:
    """strategy.positives=P (the Hybrid paper's iNat SC): the other view plus P drawn same-class
    views. P >= the same-class views of a batch is SupCon exactly; P = 1 drops one of two."""
    net, cfg = _net()
    supcon, _ = Hybrid(net, torch.nn.CrossEntropyLoss(), cfg).losses(_batch())
    for positives, equal in ((2, True), (1, False)):
        cfg_p = HybridConfig(proj_hidden=16, proj_dim=8, positives=positives)
        drawn = HybridNet(net.backbone, cfg_p, 3)
        drawn.projector = net.projector
        step = Hybrid(drawn, torch.nn.CrossEntropyLoss(), cfg_p,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
        con, _ = step.losses(_batch())
        assert torch.isfinite(con) and torch.allclose(con, supcon, atol=1e-6) == equal
        assert step.step_state() is not None
    assert Hybrid(net, torch.nn.CrossEntropyLoss(), cfg).step_state() is None


def test_positives_apply_to_hybrid_sc_only() -> None:
    with pytest.raises(LongtailError, match="strategy.positives=2 applies to hybrid SC"):
        load_config(
            None, ["strategy.name=hybrid", "strategy.contrastive=psc", "strategy.positives=2"]
        )


def test_bn_modes_differ_only_through_batch_statistics() -> None:
    joint, cfg_j = _net(batch_norm="joint")
    separate, cfg_s = _net(batch_norm="separate")
    separate.load_state_dict(joint.state_dict())
    steps = [
        Hybrid(n, torch.nn.CrossEntropyLoss(), c) for n, c in ((joint, cfg_j), (separate, cfg_s))
    ]
    batch = _batch()
    joint.eval(), separate.eval()  # running statistics: the two modes are the same function
    eval_mode = [s.losses(batch) for s in steps]
    assert torch.allclose(eval_mode[0][0], eval_mode[1][0], atol=1e-6)
    assert torch.allclose(eval_mode[0][1], eval_mode[1][1], atol=1e-6)
    joint.train(), separate.train()  # batch statistics: joint mixes the branches' batches
    train_mode = [s.losses(batch) for s in steps]
    assert not torch.allclose(train_mode[0][1], train_mode[1][1])


def test_step_weights_the_branches_by_alpha() -> None:
    net, cfg = _net("psc")
    step = Hybrid(net, torch.nn.CrossEntropyLoss(), cfg)
    step.set_epoch(1, 2)  # alpha = 1 - (1/2)^2 = 0.75
    batch = _batch()
    net.eval()
    con, ce = step.losses(batch)
    stepper = Stepper(
        step, torch.optim.SGD(net.parameters(), lr=0.0), torch.device("cpu"), None, False
    )
    assert torch.allclose(stepper(batch, lr=0.0), 0.75 * con + 0.25 * ce, atol=1e-6)
    assert net.contrastive is not None and net.contrastive.prototypes.grad is not None


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hybrid")
    write_idx(root, n_train_per_class=40, n_test_per_class=3)
    return root


def _overrides(idx_root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_run(
        idx_root,
        "strategy.name=hybrid",
        "strategy.proj_hidden=32",
        "strategy.proj_dim=16",
        "schedule.warmup_epochs=0",  # a planned length the resumed run shares
        "train.max_steps_per_epoch=3",  # resuming at an epoch boundary needs no more
        "probe.enabled=false",  # probes: tests/train/test_probe_run.py
        f"out_dir={out}",
        *extra,
    )


def test_ce_stream_is_class_balanced(idx_root: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None, _overrides(idx_root, tmp_path, "train.epochs=1", "train.max_steps_per_epoch=null")
    )
    data = prepare_data(cfg.data, torch.device("cpu"))
    parts = build_training(cfg, data, torch.device("cpu"))
    ce_labels = torch.cat([batch[3] for _ in range(20) for batch in parts.loader])
    freq = torch.bincount(ce_labels, minlength=10).double() / len(ce_labels)
    assert (freq - 0.1).abs().max() < 0.03  # balanced, though the training set is 40 ... 4
    con_labels = torch.cat([batch[1] for batch in parts.loader])
    assert (
        torch.bincount(con_labels, minlength=10)[0]
        > 3 * torch.bincount(con_labels, minlength=10)[9]
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["strategy.contrastive=supcon"],
        ["strategy.contrastive=psc", "strategy.temperature=1.0"],
        ["strategy.contrastive=mpsc"],
        ["strategy.contrastive=ce"],
        ["strategy.curriculum=fixed", "strategy.batch_norm=separate"],
        ["strategy.positives=1"],  # the positives' draw resumes from the step state
    ],
    ids=lambda e: "-".join(x.split("=")[1] for x in e),
)
def test_hybrid_runs_evaluate_and_resume(idx_root: Path, tmp_path: Path, extra: list[str]) -> None:
    straight = train(
        load_config(None, _overrides(idx_root, tmp_path / "a", "train.epochs=2", *extra))
    )
    half = train(load_config(None, _overrides(idx_root, tmp_path / "b", "train.epochs=1", *extra)))
    resume(half, ["train.epochs=2"])
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(half / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    final = json.loads((straight / "final.json").read_text())
    assert evaluate_run(straight)["top1"] == final["top1"]


def test_pure_contrastive_stage_never_sees_the_ce_view() -> None:
    net, _ = _net()
    cfg = HybridConfig(curriculum="fixed", fixed_alpha=1.0, proj_hidden=16, proj_dim=8)
    step = Hybrid(net, torch.nn.CrossEntropyLoss(), cfg)
    (v1, v2), y_con, x_ce, y_ce = _batch()
    nan_ce_view = torch.full_like(x_ce, float("nan"))  # would poison BN stats if it were seen
    con, ce = step.losses(([v1, v2], y_con, nan_ce_view, y_ce))
    z = net.projector(net.pooled(torch.cat([v1, v2])))
    assert torch.allclose(con, SupConLoss(0.1)(z, torch.cat([y_con, y_con])), atol=1e-6)
    assert ce.item() == 0.0

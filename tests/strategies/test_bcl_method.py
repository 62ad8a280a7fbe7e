"""The BCL method on the shared stepper: its batches, its loss written out by hand, a short run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.losses.bcl import BCLLoss
from longtail.strategies.bcl import BCL, BCLNet
from longtail.train.build import build_training
from longtail.train.trainer import train
from tiny_runs import tiny_run

BCL_TINY = [
    "strategy.name=bcl",
    "model.classifier=cosine",
    "loss.name=logit_adjusted",
    "strategy.logit_scale=16",
    "strategy.proj_hidden=16",
    "strategy.proj_dim=8",
    "train.channels_last=false",
    "train.max_steps_per_epoch=2",
]


def _parts(idx_root: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    cfg = load_config(None, tiny_run(idx_root, f"out_dir={tmp_path}", *BCL_TINY, *extra))
    return cfg, build_training(
        cfg, prepare_data(cfg.data, torch.device("cpu")), torch.device("cpu")
    )


def test_three_views_of_one_instance_sampled_batch(idx_root: Path, tmp_path: Path) -> None:
    _, parts = _parts(idx_root, tmp_path)
    assert isinstance(parts.model, BCLNet) and isinstance(parts.step.method, BCL)
    (x_ce, x1, x2), labels = next(iter(parts.loader))
    assert x_ce.shape == x1.shape == x2.shape and labels.shape == (16,)
    assert not torch.equal(x1, x2)  # two views, each with its own draw


@pytest.mark.parametrize(
    "extra", [[], ["strategy.prototypes=false", "strategy.class_average=false"]]
)
def test_the_step_loss_is_alpha_ce_plus_beta_bcl(
    idx_root: Path, tmp_path: Path, extra: list[str]
) -> None:
    cfg, parts = _parts(idx_root, tmp_path, *extra)
    net, method = parts.model, parts.step.method
    batch = next(iter(parts.loader))
    (x_ce, x1, x2), y = batch
    net.train()
    with torch.no_grad():
        pooled = net.backbone.forward_pooled(torch.cat([x_ce, x1, x2]))  # one joint forward
        n = y.shape[0]
        cosines = F.normalize(pooled[:n], dim=1) @ F.normalize(net.backbone.fc.weight, dim=1).T
        counts = torch.tensor(parts.objective.counts, dtype=torch.float32)
        ce = F.cross_entropy(16 * cosines + torch.log(counts / counts.sum()), y)
        z = net.projector(pooled[n:])
        centers = net.centers() if cfg.strategy.prototypes else None
        con = BCLLoss(10, 0.07, cfg.strategy.class_average)(
            z, torch.cat([y, y]), prototypes=centers
        )
        got = method.loss(method(batch), batch)
    assert got.item() == pytest.approx(1.0 * ce.item() + 0.35 * con.item(), rel=1e-4)


def test_a_short_run_trains_and_reports(idx_root: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        tiny_run(
            idx_root, f"out_dir={tmp_path}", *BCL_TINY, "train.epochs=2", "probe.enabled=false"
        ),
    )
    run = train(cfg)
    final = json.loads((run / "final.json").read_text())
    assert math.isfinite(final["top1"]) and 0 <= final["top1"] <= 100
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 2 and all(math.isfinite(r["train_loss"]) for r in history)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["strategy.contrastive_views=sim-x"], "strategy.contrastive_views='sim-x'"),
        (["strategy.bcl_weight=-1"], "strategy.bcl_weight=-1"),
        (["train.sampler=class_balanced"], "train.sampler=random"),
        (["strategy.sim_jitter=[0.4,0.4]"], "augment.jitter takes 4 values"),
        (["sam.rho=0.5"], "use SAM with"),
    ],
)
def test_bad_bcl_settings_are_one_line(idx_root: Path, extra: list[str], match: str) -> None:
    with pytest.raises(LongtailError, match=match) as err:
        load_config(None, tiny_run(idx_root, *BCL_TINY, *extra))
    assert "\n" not in str(err.value)

"""SSL pre-training end to end: tiny runs of every strategy, probes, rwSAM metrics, exact resume."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from longtail.config import load_config
from longtail.data.loader import DeviceLoader
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.models import create_model
from longtail.run_folder import RunFolder
from longtail.strategies.pretraining import ContrastiveNet, Pretrain
from longtail.strategies.simsiam import SimSiamNet
from longtail.train.build import build_training
from longtail.train.trainer import resume, train
from ssl_helpers import knn_top1_bounds, pooled_by_hand, ssl_parts, ssl_run

# one xdist worker runs this module (its fixtures train once): see tests/test_dist.py
pytestmark = pytest.mark.xdist_group("ssl_runs")

CPU = torch.device("cpu")


RUNS = {
    "simsiam": ["strategy.name=simsiam"],
    "simclr": ["strategy.name=simclr", "strategy.temperature=0.5"],
    "supcon": ["strategy.name=supcon"],
    "moco": ["strategy.name=moco", "strategy.queue_size=32", "strategy.temperature=0.2"],
    "simsiam-rwsam-kde": [
        "strategy.name=simsiam",
        "sam.rho=0.5",
        "sam.adaptive=true",
        "sam.weights=kde",
        "sam.refresh_every=1",
    ],
    "simsiam-rwsam-label": ["strategy.name=simsiam", "sam.rho=0.5", "sam.weights=label"],
}


@pytest.fixture(scope="module", params=list(RUNS))
def ssl_run_dir(
    request: pytest.FixtureRequest, idx_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param)
    return request.param, train(
        load_config(None, ssl_run(idx_root, out, "train.epochs=2", *RUNS[request.param]))
    )


def test_ssl_runs_end_with_probes(ssl_run_dir: tuple[str, Path]) -> None:
    _, run = ssl_run_dir
    final = json.loads((run / "final.json").read_text())
    for key in ("probe_top1", "probe_knn_top1", "knn_top1", "best_knn_top1"):
        assert isinstance(final[key], float) and math.isfinite(final[key]), key
    assert "top1" not in final and "best_top1" not in final  # top1 is a trained classifier's
    assert {"few_many_ratio", "slope", "cv"} <= final.keys()
    assert final["ood_probe_top1"] is None
    assert final["probe"]["balanced"]["train_size"] == 10 * 20  # probe.balanced_per_class=20
    assert final["probe"]["long_tailed"]["train_size"] == sum(final["train_counts"])
    assert final["probe_top1"] == final["probe"]["balanced"]["probe_top1"]
    assert (run / "probe_per_class.png").is_file()


def test_rwsam_weights_are_reported_each_epoch(ssl_run_dir: tuple[str, Path]) -> None:
    name, run = ssl_run_dir
    metrics = RunFolder(run).read_metrics()
    assert [m["epoch"] for m in metrics] == [1, 2]
    if name == "simsiam-rwsam-kde":  # ones until the first estimate, at epoch 1 (0-based)
        assert metrics[0]["rw_weight_max"] == 1.0
        assert metrics[0]["rw_weight_rare_frequent"] == 1.0
        assert metrics[1]["rw_weight_max"] != 1.0
        assert 1.0 < metrics[1]["rw_weight_max"] <= 10.0  # sam.max_weight
    elif name == "simsiam-rwsam-label":
        # w_i = n_{y_i}^-1 / mean: max N / (C n_min); the tail/head ratio of the per-class mean
        # weights is mean(1 / n) over the 3 rarest classes over that of the 3 most frequent
        counts = json.loads((run / "final.json").read_text())["train_counts"]
        by_size = sorted(counts, reverse=True)
        for m in metrics:
            assert m["rw_weight_max"] == pytest.approx(sum(counts) / (10 * min(counts)), abs=1e-4)
            ratio = sum(1 / n for n in by_size[-3:]) / sum(1 / n for n in by_size[:3])
            assert m["rw_weight_rare_frequent"] == pytest.approx(ratio, abs=1e-4)
            assert m["rw_weight_rare_frequent"] > 1
    else:
        assert not any("rw_weight_max" in m for m in metrics)


def test_classifier_untouched_and_evaluation_is_knn(ssl_run_dir: tuple[str, Path]) -> None:
    _, run = ssl_run_dir
    folder = RunFolder(run)
    cfg = folder.read_config()
    state = folder.load_checkpoint()["model"]
    data = prepare_data(cfg.data, CPU)
    init = build_training(cfg, data, CPU).model.state_dict()  # the same seeded initialisation
    for key in ("backbone.fc.weight", "backbone.fc.bias"):
        assert torch.equal(state[key], init[key]), key
    trained = [k for k in init if k.startswith("backbone.") and init[k].is_floating_point()]
    assert any(not torch.equal(state[k], init[k]) for k in trained)  # the rest did learn
    backbone = create_model("resnet20", num_classes=10, in_chans=1, width=0.25)
    backbone.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("backbone.")})
    bank = pooled_by_hand(backbone, data.train_images, data.mean, data.std)
    queries = pooled_by_hand(backbone, data.test_images, data.mean, data.std)
    k, tau = cfg.probe.knn_k, cfg.probe.knn_temperature
    low, high = knn_top1_bounds(bank, data.train_labels, queries, data.test_labels, 10, k, tau)
    final = json.loads((run / "final.json").read_text())
    assert low - 1e-6 <= final["knn_top1"] <= high + 1e-6  # final.json keeps 10 significant digits
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["knn_top1"] == final["knn_top1"] and "top1" not in metrics[-1]


@pytest.mark.parametrize(("epochs", "stop", "refresh"), [(2, 1, 1), (4, 3, 2)])
def test_rwsam_kde_resume_is_exact(
    idx_root: Path, tmp_path: Path, epochs: int, stop: int, refresh: int
) -> None:
    """(4, 3, 2): the weights estimated at epoch 2 come back from the checkpoint, not re-estimated."""
    rw = ["strategy.name=simsiam", "sam.rho=0.5", "sam.weights=kde", f"sam.refresh_every={refresh}"]
    straight = train(
        load_config(None, ssl_run(idx_root, tmp_path / "a", f"train.epochs={epochs}", *rw))
    )
    half = train(load_config(None, ssl_run(idx_root, tmp_path / "b", f"train.epochs={stop}", *rw)))
    resume(half, [f"train.epochs={epochs}"])
    a, b = (RunFolder(r).load_checkpoint() for r in (straight, half))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    values = [c["step"]["weights"]["values"] for c in (a, b)]
    assert torch.equal(values[0], values[1]) and not bool((values[0] == 1).all())
    rw_max = [[m["rw_weight_max"] for m in RunFolder(r).read_metrics()] for r in (straight, half)]
    assert rw_max[0] == rw_max[1] and len(rw_max[0]) == epochs


def test_pretrain_step_is_built_for_simsiam_simclr_supcon(idx_root: Path, tmp_path: Path) -> None:
    for name, net_type in (
        ("simsiam", SimSiamNet),
        ("simclr", ContrastiveNet),
        ("supcon", ContrastiveNet),
    ):
        parts = ssl_parts(idx_root, tmp_path, f"strategy.name={name}")
        assert isinstance(parts.model, net_type) and isinstance(parts.step.method, Pretrain)
        assert isinstance(parts.loader, DeviceLoader)
        batch: Any = next(iter(parts.loader))
        views, labels, indices = batch  # with the positions rwSAM's weights are read at
        assert len(views) == 2 and views[0].shape == views[1].shape
        assert torch.equal(parts.loader.labels[indices], labels)
        assert getattr(parts.model, "use_labels", False) == (name == "supcon")


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["strategy.name=simsiam", "strategy.proj_layers=4"], "proj_layers=4"),
        (
            ["strategy.name=simclr", "strategy.temperature=0"],
            r"strategy.temperature=0(\.0)? must be > 0",
        ),
        (["strategy.name=supcon", "train.sampler=class_balanced"], "train.sampler=random"),
        (
            ["strategy.name=simsiam", "strategy.pred_hidden=0"],
            "strategy.pred_hidden=0 must be >= 1",
        ),
        (["strategy.name=moco", "train.compile=true"], "train.compile=false"),
        (["strategy.name=kcl", "strategy.proj_hidden=-1"], "proj_hidden=-1 must be >= 0"),
        (["strategy.name=simclr", "loss.name=focal"], "trains no classifier"),
        (["strategy.name=simsiam", "eval.tau_norm=1.0"], "trains no classifier"),
    ],
)
def test_bad_pretraining_settings_are_one_line(
    idx_root: Path, tmp_path: Path, extra: list[str], match: str
) -> None:
    with pytest.raises(LongtailError, match=match) as err:
        load_config(None, ssl_run(idx_root, tmp_path, *extra))
    assert "\n" not in str(err.value)

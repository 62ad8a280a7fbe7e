"""The end-of-run probes: frozen backbone, balanced/long-tailed/OOD probe sets, packs, switches."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from data.fixtures import write_cifar10_pickles, write_idx
from longtail.config import Config, DataConfig, load_config
from longtail.data.pack_recipe import build_pack
from longtail.data.prepared import PreparedData
from longtail.data.setup import prepare_data
from longtail.data.source import DataSource
from longtail.errors import LongtailError
from longtail.eval.ood import balanced_indices, match_format
from longtail.eval.representation import backbone_of
from longtail.train.build import build_model
from longtail.train.probe_run import HEADLINE, probe_run
from longtail.train.trainer import train
from ssl_helpers import knn_top1_bounds, pooled_by_hand, ssl_run

CPU = torch.device("cpu")
SMALLEST = 12  # the full training split's smallest class (class 9)


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe_idx")
    write_idx(root, n_train_per_class=[40] * 9 + [SMALLEST], n_test_per_class=3, size=16)
    return root


def _setup(idx_root: Path, out: Path, *extra: str) -> tuple[Config, PreparedData, torch.nn.Module]:
    cfg = load_config(None, ssl_run(idx_root, out, "strategy.name=simsiam", *extra))
    data = prepare_data(cfg.data, CPU)
    return cfg, data, build_model(cfg, data, CPU)


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _knn_top1(
    backbone: torch.nn.Module, data: PreparedData, bank: torch.Tensor, labels: torch.Tensor,
    test_images: torch.Tensor, test_labels: torch.Tensor, cfg: Config,
) -> tuple[float, float]:  # fmt: skip
    feats = pooled_by_hand(backbone, bank, data.mean, data.std)
    queries = pooled_by_hand(backbone, test_images, data.mean, data.std)
    k, tau = cfg.probe.knn_k, cfg.probe.knn_temperature
    return knn_top1_bounds(feats, labels, queries, test_labels, 10, k, tau)


def test_probes_leave_the_backbone_bit_identical(idx_root: Path, tmp_path: Path) -> None:
    cfg, data, model = _setup(idx_root, tmp_path)
    model.train()  # a probe that forgot eval() would move the BatchNorm statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    record = probe_run(model, data, cfg, CPU, tmp_path / "probe.png")
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert (tmp_path / "probe.png").is_file()
    probes = record["probe"]
    assert set(probes) == {"balanced", "long_tailed"} and record["ood_probe_top1"] is None
    assert all(record[key] == probes["balanced"][key] for key in HEADLINE)
    for probe in probes.values():
        assert 0.0 <= probe["probe_top1"] <= 100.0 and math.isfinite(probe["probe_knn_top1"])
        assert len(probe["per_class_acc"]) == 10 and probe["test_size"] == 30


@pytest.mark.parametrize(
    ("per_class", "expected"), [("20", SMALLEST), ("8", 8), ("null", SMALLEST)]
)
def test_balanced_probe_set_is_capped_by_the_smallest_class(
    idx_root: Path, tmp_path: Path, per_class: str, expected: int
) -> None:
    cfg, data, model = _setup(idx_root, tmp_path, f"probe.balanced_per_class={per_class}")
    probes = probe_run(model, data, cfg, CPU, None)["probe"]
    assert probes["balanced"]["train_size"] == 10 * expected
    assert probes["long_tailed"]["train_size"] == len(data.train_labels) == sum(data.train_counts)
    full = DataSource.of(cfg.data).arrays("train")
    keep = balanced_indices(full.labels, 10, cfg.probe.balanced_per_class, seed=0)
    assert np.bincount(full.labels[keep], minlength=10).tolist() == [expected] * 10
    backbone = backbone_of(model)
    test = (data.test_images, data.test_labels, cfg)
    balanced = _knn_top1(backbone, data, _nchw(full.images[keep]),
                         torch.from_numpy(full.labels[keep]), *test)  # fmt: skip
    long_tailed = _knn_top1(backbone, data, data.train_images, data.train_labels, *test)
    assert balanced[0] - 1e-3 <= probes["balanced"]["probe_knn_top1"] <= balanced[1] + 1e-3
    assert long_tailed[0] - 1e-3 <= probes["long_tailed"]["probe_knn_top1"] <= long_tailed[1] + 1e-3


def _cifar(root: Path) -> Path:
    return write_cifar10_pickles(root, n_per_class=6, n_test_per_class=2, seed=3).root


def _mnist(root: Path) -> Path:
    return write_idx(root, n_train_per_class=7, n_test_per_class=2, size=28, seed=5).root


@pytest.mark.parametrize(("ood", "writer"), [("cifar10", _cifar), ("mnist", _mnist)])
def test_ood_probe_on_another_dataset(
    idx_root: Path, tmp_path: Path, ood: str, writer: Any
) -> None:
    ood_root = writer(tmp_path / "ood")
    cfg, data, model = _setup(
        idx_root,
        tmp_path,
        f"probe.ood={ood}",
        f"probe.ood_root={ood_root}",
        "probe.ood_per_class=4",
    )
    record = probe_run(model, data, cfg, CPU, None)
    probe = record["probe"]["ood"]
    assert record["ood_probe_top1"] == probe["probe_top1"] and math.isfinite(probe["probe_top1"])
    assert probe["train_size"] == 40 and probe["test_size"] == 20
    assert "few_many_ratio" not in probe  # balancedness is about the pre-training classes only
    source = DataConfig(dataset=ood, root=str(ood_root), cache_dir=None)
    train_split, test_split = (DataSource.of(source).arrays(split) for split in ("train", "test"))
    keep = balanced_indices(train_split.labels, 10, 4, seed=0)

    def as_training_format(images: np.ndarray) -> torch.Tensor:  # grey 16 x 16, as the run's
        return match_format(_nchw(images), 1, (16, 16))

    expected = _knn_top1(
        backbone_of(model), data, as_training_format(train_split.images[keep]),
        torch.from_numpy(train_split.labels[keep]), as_training_format(test_split.images),
        torch.from_numpy(test_split.labels), cfg,
    )  # fmt: skip
    assert expected[0] - 1e-3 <= probe["probe_knn_top1"] <= expected[1] + 1e-3


@pytest.mark.parametrize("long_tailed", [True, False])
def test_pack_has_no_balanced_probe_set(idx_root: Path, tmp_path: Path, long_tailed: bool) -> None:
    source = load_config(None, ssl_run(idx_root, tmp_path, "strategy.name=simsiam"))
    pack = tmp_path / "subset.npz"
    build_pack(source.data, pack)
    cfg, data, model = _setup(
        idx_root, tmp_path, "data.dataset=pack", f"data.root={pack}",
        f"probe.long_tailed={str(long_tailed).lower()}",
    )  # fmt: skip
    record = probe_run(model, data, cfg, CPU, tmp_path / "probe.png")
    assert record["probe"]["balanced"] is None
    assert all(record[key] is None for key in HEADLINE)  # never the long-tailed probe's numbers
    if long_tailed:  # the long-tailed probe is still reported (and plotted) under its own name
        lt = record["probe"]["long_tailed"]
        assert lt["train_size"] == sum(data.train_counts) and lt["probe_top1"] is not None
        assert (tmp_path / "probe.png").is_file()
    else:
        assert "long_tailed" not in record["probe"]
        assert not (tmp_path / "probe.png").exists()


def test_source_pack_keeps_the_balanced_probe(idx_root: Path, tmp_path: Path) -> None:
    """A pack of the whole split (``pack --whole``) serves the balanced probe like its source."""
    pack = tmp_path / "whole.npz"
    build_pack(load_config(None, ssl_run(idx_root, tmp_path)).data, pack, whole=True)
    cfg, data, model = _setup(idx_root, tmp_path, "data.dataset=pack", f"data.root={pack}")
    from_pack = probe_run(model, data, cfg, CPU, None)
    cfg_src, data_src, _ = _setup(idx_root, tmp_path)
    from_source = probe_run(model, data_src, cfg_src, CPU, None)
    assert from_pack["probe"]["balanced"] is not None
    assert from_pack["probe"]["balanced"] == from_source["probe"]["balanced"]


def test_disabled_probe_writes_no_probe_keys(idx_root: Path, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        ssl_run(
            idx_root, tmp_path, "strategy.name=simsiam", "train.epochs=1", "probe.enabled=false"
        ),
    )
    run = train(cfg)
    final = json.loads((run / "final.json").read_text())
    assert not {"probe", "ood_probe_top1", *HEADLINE} & final.keys()
    assert math.isfinite(final["knn_top1"]) and "top1" not in final  # the kNN monitor still runs
    assert (run / "per_class.png").is_file() and not (run / "probe_per_class.png").exists()


@pytest.mark.parametrize("ood", ["svhn", "FASHION_MNIST"])
def test_unknown_ood_dataset_is_one_line(ood: str) -> None:
    with pytest.raises(LongtailError, match="probe.ood=") as err:
        load_config(None, ssl_run(Path("unused"), Path("unused"), f"probe.ood={ood}"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("ood", ["split_list"])
def test_ood_datasets_that_cannot_be_probed_are_refused(ood: str) -> None:
    with pytest.raises(LongtailError, match="probe.ood="):
        load_config(None, ssl_run(Path("unused"), Path("unused"), f"probe.ood={ood}"))


def test_missing_ood_data_leaves_no_run_folder(idx_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = load_config(
        None,
        ssl_run(idx_root, out, "strategy.name=simsiam", "train.epochs=1",
                "probe.ood=fashion_mnist", f"probe.ood_root={tmp_path / 'missing'}"),
    )  # fmt: skip
    with pytest.raises(LongtailError, match="probe.ood"):
        train(cfg)
    assert not out.exists() or not any(out.iterdir())


def test_ood_probe_from_a_whole_pack_equals_its_source(idx_root: Path, tmp_path: Path) -> None:
    """probe.ood=pack (a `pack --whole` of another dataset, for GPU machines) reads the same images."""
    ood_root = _mnist(tmp_path / "ood")
    pack = tmp_path / "ood.npz"
    build_pack(DataConfig(dataset="mnist", root=str(ood_root), cache_dir=None), pack, whole=True)
    common = ["probe.ood_per_class=4", "probe.long_tailed=false"]
    cfg, data, model = _setup(idx_root, tmp_path, "probe.ood=mnist", f"probe.ood_root={ood_root}",
                              *common)  # fmt: skip
    cfg_pack = replace(cfg, probe=replace(cfg.probe, ood="pack", ood_root=str(pack)))
    from_source = probe_run(model, data, cfg, CPU, None)["probe"]["ood"]
    from_pack = probe_run(model, data, cfg_pack, CPU, None)["probe"]["ood"]
    assert from_pack == from_source

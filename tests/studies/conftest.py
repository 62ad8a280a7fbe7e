"""A fake ``train`` for the study runner: complete run folders in milliseconds, numbers that depend
on the method and the imbalance ratio, so records can be traced back to their runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from longtail.config import Config, to_yaml
from longtail.run_folder import RunFolder
from longtail.studies import runner

METHOD_BONUS = {"CE": 0.0, "SimSiam": 4.0, "SupCon": 2.0}


def fake_counts(cfg: Config) -> list[int]:
    """Ten classes: ``data.total`` split evenly, else the exponential profile from n_max = 50."""
    total = cfg.data.total
    if total is None:
        r = cfg.data.imbalance_ratio
        return [math.floor(50 * r ** (-c / 9)) for c in range(10)]
    return [total // 10 + (1 if c < total % 10 else 0) for c in range(10)]


def fake_final(cfg: Config) -> dict[str, Any]:
    """Plausible final.json numbers: probe top-1 falls with log r, balancedness too."""
    log_r = math.log10(cfg.data.imbalance_ratio)
    probe = 80.0 + METHOD_BONUS.get(cfg.method or "", 1.0) - 5.0 * log_r + cfg.train.seed
    return {
        "top1": probe - 10.0,
        "train_counts": fake_counts(cfg),
        "probe_top1": probe,
        "probe_knn_top1": probe - 3.0,
        "few_many_ratio": 1.0 / (1.0 + 0.25 * log_r),
        "slope": 2.0 * log_r,
        "cv": 0.05 + 0.1 * log_r,
        "ood_probe_top1": probe - 30.0 if cfg.probe.ood else None,
        "epochs": cfg.train.epochs,
        "device": "fake",
        "commit": "abc123",
    }


@pytest.fixture
def fake_train(monkeypatch: pytest.MonkeyPatch) -> list[Config]:
    """Replace the runner's ``train``; returns the list of configs it was called with."""
    calls: list[Config] = []

    def train(cfg: Config) -> Path:
        calls.append(cfg)
        run = RunFolder.create(cfg.out_dir, cfg.name)
        run.write_config(to_yaml(cfg))
        run.write_status("running", epoch=0)
        run.write_final(fake_final(cfg))
        run.write_status("complete")
        return run.path

    monkeypatch.setattr(runner, "train", train)
    return calls


@pytest.fixture
def recipes(tmp_path: Path) -> dict[str, Path]:
    """Tiny recipes (loading them never touches data): three methods, one with its own lr."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    paths = {}
    for name, extra in (("ce", {}), ("simsiam", {"optim": {"lr": 0.05}}), ("supcon", {})):
        path = folder / f"{name}.yaml"
        tree = {"name": name, "model": {"name": "resnet20"}, "train": {"epochs": 7}, **extra}
        path.write_text(yaml.safe_dump(tree))
        paths[name] = path
    return paths


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """``write_spec(**keys)``: a spec YAML in tmp_path; returns its path."""

    def write(filename: str = "spec.yaml", **keys: Any) -> Path:
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(keys, sort_keys=False))
        return path

    return write

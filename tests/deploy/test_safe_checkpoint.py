"""A run's checkpoint.pt loads with torch.load's safe default (weights_only=True), every method."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from data.fixtures import write_idx
from longtail import runtime
from longtail.config import load_config
from longtail.run_folder import RunFolder
from longtail.train.trainer import train
from ssl_helpers import ssl_run

METHODS = {
    "supervised": ["train.sampler=class_balanced"],
    "hybrid": ["strategy.name=hybrid", "strategy.contrastive=psc"],
    "simsiam_rwsam": [
        "strategy.name=simsiam",
        "sam.rho=0.5",
        "sam.weights=kde",
        "sam.refresh_every=1",
    ],
    "kcl": ["strategy.name=kcl", "strategy.k=2", "strategy.queue_size=40"],
}


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("safe_idx")
    write_idx(root, n_train_per_class=20, n_test_per_class=2)
    return root


@pytest.mark.parametrize("method", list(METHODS))
def test_the_checkpoint_loads_with_torch_loads_defaults(
    idx_root: Path, tmp_path: Path, method: str
) -> None:
    cfg = load_config(None, ssl_run(idx_root, tmp_path, "train.epochs=1", "probe.enabled=false",
                                    *METHODS[method]))  # fmt: skip
    run = train(cfg)
    state = torch.load(run / "checkpoint.pt")  # weights_only=True: nothing but tensors and data
    assert state["epoch"] == 1 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_numpys_generator_state_round_trips_through_the_safe_format() -> None:
    np.random.seed(7)
    np.random.normal()  # a cached Gaussian is part of the state
    buf = io.BytesIO()
    torch.save(runtime.rng_state(), buf)
    want = np.random.normal(size=3)
    buf.seek(0)
    runtime.load_rng_state(torch.load(buf))
    assert np.array_equal(np.random.normal(size=3), want)


def test_a_checkpoint_of_the_older_format_still_resumes(tmp_path: Path) -> None:
    """Checkpoints written before the safe format held NumPy's own state tuple."""
    np.random.seed(3)
    state = {"rng": {**runtime.rng_state(), "numpy": np.random.get_state()}}
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({**state, "model": {}, "optimizer": {}, "loader": {}, "epoch": 1, "history": {}},
               folder / "checkpoint.pt")  # fmt: skip
    loaded = RunFolder(folder, writes=False).load_checkpoint()
    want = np.random.random(2)
    runtime.load_rng_state(loaded["rng"])
    assert np.array_equal(np.random.random(2), want)

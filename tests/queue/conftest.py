"""Shared fixtures of the queue tests: idx data, the tiny recipe, and one real queue run.

The real run (``queue_run``) is session-scoped: a tiny training takes ~15 s as a subprocess, so the
runner and merge tests share one ``run_queue`` call over a queue that exercises, at once, priority
order, an estimate that cannot fit, an entry without a CPU estimate, a run failing in its child, a
shortened run, and a config that does not load.
"""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import pytest
from queue_files import QueueRun, entry, write_queue, write_recipe

from data.fixtures import write_idx
from longtail.queue.runner import run_queue


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 x 16 grey Fashion-MNIST-format data, 40 training and 3 test images a class."""
    root = tmp_path_factory.mktemp("queue-idx")
    write_idx(root, n_train_per_class=40, n_test_per_class=3, size=16)
    return root


@pytest.fixture(scope="session")
def recipe(tmp_path_factory: pytest.TempPathFactory, idx_root: Path) -> Path:
    return write_recipe(tmp_path_factory.mktemp("queue-recipe") / "tiny.yaml", idx_root)


@pytest.fixture(scope="session")
def queue_run(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> QueueRun:
    base = tmp_path_factory.mktemp("queue-run")
    results = base / "results" / "tiny.json"
    entries = [
        # file order is not run order: the priority-1 "ce" must start before this one
        entry("ce-short", recipe, results, priority=2,
              overrides=["train.max_steps_per_epoch=2", "method=CE-short"]),
        entry("ce", recipe, results, priority=1),
        entry("fails", recipe, results, priority=3, overrides=[f"data.root={base / 'missing'}"]),
        entry("too-long", recipe, results, priority=1, minutes={"cpu": 1000}),
        entry("bad-config", recipe, results, priority=1, overrides=["optim.lr=-1"]),
        entry("gpu-only", recipe, results, priority=1, minutes={"cpu": None, "h200": 3}),
    ]  # fmt: skip
    queue = write_queue(base / "owed.yaml", entries)
    runs, out = base / "queue-runs", base / "bundle"
    printed = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(printed):
        summary = run_queue(
            queue, budget_s=300, jobs=2, out=out, runs=runs, device="cpu", poll_s=0.5
        )
    wall = time.monotonic() - t0
    return QueueRun(base, queue, runs, out, recipe, entries, summary, printed.getvalue(), wall)

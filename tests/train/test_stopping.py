"""How a run stops and who owns its folder: SIGTERM like Ctrl-C, one live run per folder, and a
folder left by ``kill -9`` recognised as dead and resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.fixtures import write_idx
from longtail.errors import LongtailError
from longtail.run_folder import RunFolder, is_live
from longtail.train.trainer import resume
from tiny_runs import tiny_run

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stopping")
    write_idx(root, n_train_per_class=30, n_test_per_class=3)
    return root


def _start(idx_root: Path, out: Path, epochs: int) -> tuple[subprocess.Popen[str], Path]:
    """A training subprocess; returns it and its run folder once its first epoch is saved."""
    args = tiny_run(idx_root, f"train.epochs={epochs}", "train.threads=1", "probe.enabled=false",
                    f"out_dir={out}", "name=stop")  # fmt: skip
    recipe = str(Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "longtail", "train", recipe, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        folders = list(out.glob("*-stop"))
        if folders and (folders[0] / "checkpoint.pt").is_file():
            return proc, folders[0]
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no checkpoint within 120 s")


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(idx_root: Path, tmp_path: Path) -> None:
    proc, folder = _start(idx_root, tmp_path, epochs=200)
    assert is_live(folder)
    with pytest.raises(LongtailError, match="is in use by a live run \\(pid"):
        resume(folder, ["train.epochs=2"])  # a second owner while the first trains
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"interrupted: continue with  longtail train resume={folder}" in err
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"
    assert not is_live(folder)
    done = RunFolder.open(folder).load_checkpoint()["epoch"]
    assert done >= 1
    resume(folder, [f"train.epochs={done + 1}"])
    assert json.loads((folder / "status.json").read_text())["state"] == "complete"
    assert [m["epoch"] for m in RunFolder(folder).read_metrics()] == list(range(1, done + 2))


def test_a_killed_run_leaves_a_dead_folder_that_resumes(idx_root: Path, tmp_path: Path) -> None:
    proc, folder = _start(idx_root, tmp_path, epochs=200)
    proc.kill()  # kill -9: no handler runs, status.json still says running
    proc.communicate(timeout=30)
    assert json.loads((folder / "status.json").read_text())["state"] == "running"
    assert not is_live(folder)  # the kernel dropped the lock with the process
    done = RunFolder.open(folder).load_checkpoint()["epoch"]
    resume(folder, [f"train.epochs={done + 1}"])
    assert json.loads((folder / "status.json").read_text())["state"] == "complete"

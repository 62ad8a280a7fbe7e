"""Run folders under concurrency and kills: unique folders, no stale temp files, honest status."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.run_folder import RunFolder
from longtail.train.trainer import resume, train
from tiny_runs import tiny_run


def test_folders_created_at_once_never_collide(tmp_path: Path) -> None:
    barrier, made, errors = threading.Barrier(8), [], []

    def create() -> None:
        barrier.wait()
        try:
            made.append(RunFolder.create(tmp_path / "runs", "same").path)
        except Exception as err:  # noqa: BLE001 -- collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(made)) == 8 and all(p.is_dir() for p in made)


def test_an_unwritable_out_dir_is_one_line(tmp_path: Path) -> None:
    from longtail.errors import LongtailError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LongtailError, match="cannot create out_dir .*set out_dir to a writable"):
        RunFolder.create(blocker / "runs", "x")


def test_the_owner_removes_temp_files_a_killed_write_left(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    (tmp_path / ".checkpoint.pt.k2j4.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".final.json.x.tmp").write_text("{")
    (tmp_path / "notes.tmp").write_text("a user's file")  # not a hidden atomic-write temp
    folder.claim()
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp", "run.lock"]
    finally:
        folder.release()


def test_a_resume_killed_while_clearing_results_is_not_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Extending a finished run: "running" is written before final.json goes, so a kill between
    the two never leaves "complete" without final.json."""
    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    run = train(load_config(None, tiny_run(tmp_path / "idx", "train.epochs=1", "probe.enabled=false",
                                           f"out_dir={tmp_path / 'runs'}")))  # fmt: skip

    def killed(self: RunFolder) -> None:
        (self.path / "final.json").unlink()
        raise SystemExit("killed")

    monkeypatch.setattr(RunFolder, "clear_results", killed)
    with pytest.raises(SystemExit):
        resume(run, ["train.epochs=2"])
    state = json.loads((run / "status.json").read_text())["state"]
    assert state == "running" and not (run / "final.json").exists()

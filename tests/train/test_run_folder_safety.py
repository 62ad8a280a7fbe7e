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


def test_a_kill_between_final_json_and_its_status_reads_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """final.json is the last result written; a kill before status "complete" is reconciled."""
    from longtail.queue.runner import _status

    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    written = []
    original = RunFolder.write_status

    def killed_at_complete(self: RunFolder, state: str, **extra: object) -> None:
        if written:  # a killed process writes nothing more
            return
        if state == "complete":
            written.extend(p.name for p in self.path.iterdir())
            raise SystemExit("killed")
        original(self, state, **extra)

    monkeypatch.setattr(RunFolder, "write_status", killed_at_complete)
    with pytest.raises(SystemExit):
        train(load_config(None, tiny_run(tmp_path / "idx", "train.epochs=1", "probe.enabled=false",
                                         f"out_dir={tmp_path / 'runs'}")))  # fmt: skip
    monkeypatch.undo()
    (run,) = (tmp_path / "runs").iterdir()
    # everything a finished run holds was there before the status, final.json among it
    assert {"final.json", "model.safetensors", "preprocess.json", "report.md"} <= set(written)
    assert json.loads((run / "status.json").read_text())["state"] == "running"
    assert RunFolder(run).read_state() == "complete" and _status(run) == "complete"
    folder = RunFolder(run)
    folder.claim()  # the next owner writes the status the run reached
    folder.release()
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "complete" and "reconciled" in status


def test_a_live_run_with_final_json_is_still_running(tmp_path: Path) -> None:
    (tmp_path / "final.json").write_text("{}")
    folder = RunFolder(tmp_path)
    folder.claim()
    folder.write_status("running", epoch=3)
    try:  # the owner is about to write "complete", or is extending the run: not ours to say
        assert RunFolder(tmp_path).read_state() == "running"
    finally:
        folder.release()


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC at the second epoch's checkpoint: one line naming the file, the fix and the resume;
    the first epoch's checkpoint is whole, no temp file is left, and the resume finishes."""
    import errno

    import torch

    import longtail.io
    from longtail.cli import main

    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    saves = []
    real_write = longtail.io.atomic_write

    def disk_fills(path: Path, write: object) -> None:
        if path.name == "checkpoint.pt":
            saves.append(path)
            if len(saves) == 2:

                def half_then_full(handle: object) -> None:
                    handle.write(b"half a checkpoint")  # type: ignore[attr-defined]
                    raise OSError(errno.ENOSPC, "No space left on device")

                return real_write(path, half_then_full)
        return real_write(path, write)  # type: ignore[arg-type]

    monkeypatch.setattr(longtail.io, "atomic_write", disk_fills)
    args = tiny_run(tmp_path / "idx", "train.epochs=3", "probe.enabled=false",
                    f"out_dir={tmp_path / 'runs'}")  # fmt: skip
    assert main(["train", "recipes/demo.yaml", *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    (run,) = (tmp_path / "runs").iterdir()
    assert lines[0] == (
        f"error: no space left on the disk of {run} writing checkpoint.pt (the previous"
        f" checkpoint.pt is kept): free space there, then continue with  longtail train"
        f" resume={run}"
    )
    assert not list(run.glob(".*.tmp"))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "no space left" in status["error"]
    monkeypatch.undo()
    resume(run)
    assert json.loads((run / "final.json").read_text())["epochs"] == 3


def test_a_full_disk_before_any_checkpoint_says_start_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from longtail.errors import LongtailError
    from longtail.run_folder import RunFolder as Folder

    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)

    def full(self: Folder, record: dict[str, object]) -> None:
        raise longtail_io.DiskFullError(self.file("metrics.jsonl"))

    import longtail.io as longtail_io

    monkeypatch.setattr(Folder, "append_metrics", full)
    with pytest.raises(LongtailError, match=r"writing metrics.jsonl .*start the run anew"):
        train(load_config(None, tiny_run(tmp_path / "idx", "train.epochs=1", "probe.enabled=false",
                                         f"out_dir={tmp_path / 'runs'}")))  # fmt: skip
    assert errno.ENOSPC in longtail_io.FULL

"""The self-describing run folder.

Layout (one folder per run, named ``<YYYYmmdd-HHMMSS>-<name>`` so the newest sorts last)::

    config.yaml      the resolved config (every default written out)
    lt_index.json    the long-tailed training indices, counts and how they were chosen
    metrics.jsonl    one JSON object per epoch
    checkpoint.pt    the latest epoch's state (written atomically every epoch)
    status.json      {"state": "running" | "failed" | "complete", ...}
    final.json       written once, at the end: top-1, per-class, many/medium/few, counts, timing
    per_class.png    per-class test accuracy against training count
    probe_per_class.png  per-class linear-probe accuracy of the frozen features (probe.enabled)

``final.json`` exists only for a completed run, so a crashed run never looks complete. It is the
last result a run writes (after the model files and pages) and status.json's "complete" follows it;
a kill between the two leaves status "running" beside final.json, which :meth:`RunFolder.read_state`
reads as "complete" once no process holds the folder, and which the next :meth:`RunFolder.claim`
rewrites as "complete".
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import time
from pathlib import Path
from typing import Any

import torch

from longtail.config import Config, from_dict
from longtail.errors import LongtailError
from longtail.io import (
    FULL,
    DiskFullError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    rounded,
)
from longtail.recipe_files import read_yaml_mapping

CONFIG = "config.yaml"
INDEX = "lt_index.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
STATUS = "status.json"
FINAL = "final.json"
PLOT = "per_class.png"
PROBE_PLOT = "probe_per_class.png"
ELASTIC = "elastic.json"  # torchrun's run id: a restarted group finds its folder by it
LOCK = "run.lock"  # held (flock) by the live process that trains in the folder
CHECKPOINT_KEYS = ("model", "optimizer", "loader", "rng", "epoch", "history")


def is_live(path: str | Path) -> bool:
    """True while a process holds the folder's lock (:meth:`RunFolder.claim`)."""
    import fcntl

    lock = Path(path) / LOCK
    if not lock.is_file():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


class RunFolder:
    """Paths and writers of one run folder.

    ``writes=False`` (the ranks other than 0 of a torchrun run) reads as usual and writes nothing:
    one run, one folder, one writer.
    """

    def __init__(self, path: Path, writes: bool = True) -> None:
        self.path = path
        self.writes = writes
        self._lock: Any = None  # the open lock file while this process owns the folder

    def claim(self) -> None:
        """Own the folder until this process ends: one live run per folder.

        An OS lock (``flock`` on ``run.lock``), which the kernel drops when its process dies, so a
        folder left by a killed run is free again and :func:`is_live` tells a live run from a dead
        one whatever ``status.json`` still says. A second owner gets a one-line error.
        """
        import fcntl

        handle = self.file(LOCK).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise LongtailError(
                f"{self.path} is in use by a live run ({owner}): wait for it to end or stop it"
                " (kill -TERM), then resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle
        self.remove_stale_temps()
        self._reconcile_status()

    def _reconcile_status(self) -> None:
        """A run killed between final.json and its "complete" status: write the status it reached."""
        if self._status_field("state") != "complete" and self.file(FINAL).is_file():
            self.write_status("complete", reconciled="final.json was written, the status was not")

    def remove_stale_temps(self) -> list[Path]:
        """Delete the hidden ``.NAME.XXXX.tmp`` files (io.atomic_write's) a killed write left.

        Only the folder's owner calls this (:meth:`claim`): no live write of this folder exists.
        Returns what was removed.
        """
        stale = [p for p in self.path.glob(".*.tmp") if p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def release(self) -> None:
        """Give the folder up (the end of a run; a process that dies releases it anyway)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @classmethod
    def create(cls, out_dir: str | Path, name: str) -> RunFolder:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(out_dir) / f"{stamp}-{name}"
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LongtailError(
                f"cannot create out_dir {base.parent} ({err.strerror}): set out_dir to a writable"
                " folder"
            ) from None
        for k in range(1, 10_000):  # mkdir is atomic: two processes never get one folder
            path = base if k == 1 else base.with_name(f"{base.name}-{k}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as err:
                raise LongtailError(
                    f"cannot create run folder {path} ({err.strerror}): set out_dir to a writable"
                    " folder"
                ) from None
            return cls(path)
        raise LongtailError(f"{base}-2 ... -9999 all exist: clean up {base.parent}")

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        folder = cls(Path(path))
        if not (folder.path / CONFIG).is_file():
            raise LongtailError(
                f"{path} is not a run folder (no {CONFIG}): pass a folder printed by 'longtail train'"
            )
        return folder

    def file(self, name: str) -> Path:
        return self.path / name

    def read_config(self) -> Config:
        """The run's resolved config (one-line errors for a damaged file)."""
        path = self.file(CONFIG)
        return from_dict(read_yaml_mapping(path, "run config"), str(path))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """The last finished epoch's state, checked for the keys a resume or an eval needs."""
        path = self.file(CHECKPOINT)
        if not path.is_file():
            raise LongtailError(
                f"{self.path} has no {CHECKPOINT} (it stopped before its first epoch ended):"
                " start the run anew"
            )
        try:
            try:  # tensors, numbers, strings and containers only (runtime.rng_state)
                state = torch.load(path, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError:  # written before 2026-12-03 (NumPy's RNG tuple), by
                state = torch.load(path, map_location=map_location, weights_only=False)  # us
        except Exception as err:  # a torn or foreign file: pickle, zip and torch errors alike
            raise LongtailError(f"cannot read {path} ({type(err).__name__}): start anew") from None
        missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
        if missing:
            raise LongtailError(f"{path} lacks {', '.join(missing)}: not a longtail checkpoint")
        return state

    def clear_results(self) -> None:
        """Remove what only a completed run may hold, before the run continues."""
        if not self.writes:
            return
        # eval/run_page.py's pages; deploy/'s model.safetensors, preprocess.json, model.pt2/.onnx
        for name in (FINAL, PLOT, PROBE_PLOT, "curves.png", "report.md", "model.safetensors",
                     "preprocess.json", "model.pt2", "model.onnx"):  # fmt: skip
            self.file(name).unlink(missing_ok=True)

    def write_config(self, text: str) -> None:
        if not self.writes:
            return
        atomic_write_text(self.file(CONFIG), text)

    def write_status(self, state: str, **extra: Any) -> None:
        if not self.writes:
            return
        atomic_write_json(self.file(STATUS), {"state": state, "time": time.time(), **extra})

    def _status_field(self, key: str) -> Any:
        try:
            return json.loads(self.file(STATUS).read_text()).get(key)
        except (OSError, ValueError, AttributeError):
            return None

    def read_state(self) -> str:
        """How the run stands: running, complete, failed, interrupted, or "unknown".

        status.json's state, except that a folder no process holds and that has final.json is
        "complete": final.json is written after every other result, so a status that says
        otherwise was cut off (a kill, or a full disk, after final.json and before the status).
        """
        state = self._status_field("state")
        if state != "complete" and self.file(FINAL).is_file() and not is_live(self.path):
            return "complete"
        return str(state) if state else "unknown"

    def append_metrics(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        try:
            with self.file(METRICS).open("a") as f:
                f.write(json.dumps(rounded(record), allow_nan=False) + "\n")
                f.flush()
        except OSError as err:  # a torn last line is skipped by read_metrics
            if err.errno in FULL:
                raise DiskFullError(self.file(METRICS)) from None
            raise

    def read_metrics(self) -> list[dict[str, Any]]:
        """Parsed records; a torn line (a crash mid-write) is skipped."""
        path = self.file(METRICS)
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
        return records

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop records of epochs past the checkpoint (they will be re-run on resume)."""
        if not self.writes:
            return
        kept = [r for r in self.read_metrics() if r["epoch"] <= epochs_done]
        atomic_write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in kept))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """The state after an epoch, written atomically (a kill mid-write keeps the last one)."""
        if self.writes:
            atomic_torch_save(self.file(CHECKPOINT), state)

    def write_final(self, record: dict[str, Any]) -> None:
        if not self.writes:
            return
        atomic_write_json(self.file(FINAL), rounded(record))

"""The self-describing run folder.

Layout (one folder per run, named ``<YYYYmmdd-HHMMSS>-<name>`` so the newest sorts last)::

    config.yaml      the resolved config (every default written out)
    lt_index.json    the long-tailed training indices, counts and how they were chosen
    metrics.jsonl    one JSON object per epoch
    checkpoint.pt    the latest epoch's state (written atomically every epoch)
    status.json      {"state": "running" | "failed" | "complete", ...}
    final.json       written once, at the end: top-1, per-class, many/medium/few, counts, timing
    per_class.png    per-class test accuracy against training count

``final.json`` exists only for a completed run, so a crashed run never looks complete.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from longtail.errors import LongtailError
from longtail.io import atomic_write_json, atomic_write_text

CONFIG = "config.yaml"
INDEX = "lt_index.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
STATUS = "status.json"
FINAL = "final.json"
PLOT = "per_class.png"


class RunFolder:
    """Paths and writers of one run folder."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, out_dir: str | Path, name: str) -> RunFolder:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(out_dir) / f"{stamp}-{name}"
        path, k = base, 1
        while path.exists():
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        path.mkdir(parents=True)
        return cls(path)

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

    def write_config(self, text: str) -> None:
        atomic_write_text(self.file(CONFIG), text)

    def write_status(self, state: str, **extra: Any) -> None:
        atomic_write_json(self.file(STATUS), {"state": state, "time": time.time(), **extra})

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.file(METRICS).open("a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.file(METRICS)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, epochs_done: int) -> None:
        """Drop records of epochs past the checkpoint (they will be re-run on resume)."""
        kept = [r for r in self.read_metrics() if r["epoch"] <= epochs_done]
        atomic_write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in kept))

    def write_final(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.file(FINAL), record)

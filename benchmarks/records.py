"""Where a benchmark's JSON records go: ``--out``, or benchmarks/results/<name>-<cpu|gpu>-<stamp>.json."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import torch

from longtail.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def write_records(name: str, records: Any, out: Path | None = None) -> Path:
    """Write ``records`` atomically to ``out`` (or the dated default) and say where."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    kind = "gpu" if torch.cuda.is_available() else "cpu"
    path = out or RESULTS / f"{name}-{kind}-{stamp}.json"
    atomic_write_json(path, records)
    print(f"wrote {path}")
    return path

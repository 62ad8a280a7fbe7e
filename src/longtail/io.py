"""Atomic file writes: a reader never sees a half-written checkpoint, config or result."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync it, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


SIGNIFICANT = 10  # digits a result float keeps: 87.80999999999997 is written 87.81


def rounded(obj: Any, digits: int = SIGNIFICANT) -> Any:
    """``obj`` with every float rounded to ``digits`` significant digits (results, not state:
    the binary noise of a sum is not part of a measurement). Containers are copied."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, digits) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))

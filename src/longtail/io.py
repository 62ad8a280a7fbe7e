"""Atomic file writes: a reader never sees a half-written checkpoint, config or result."""

from __future__ import annotations

import errno
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from longtail.errors import LongtailError

FULL = (errno.ENOSPC, errno.EDQUOT)  # the disk, or the user's quota on it, is full


class DiskFullError(LongtailError, OSError):
    """A write that found no space: one line naming the file and the fix; still an ``OSError``
    for callers whose writes are best-effort (the data cache)."""

    def __init__(self, path: Path, then: str = "run again") -> None:
        self.path = path
        kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was kept"
        super().__init__(
            f"no space left on the disk of {path.parent} writing {path.name} ({kept}): free space"
            f" there, then {then}"
        )

    def then(self, step: str) -> DiskFullError:
        """The same error, with the step after freeing space (the command that continues)."""
        return DiskFullError(self.path, step)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(file)`` into a temp file beside ``path``, fsync it, then rename.

    A full disk raises :class:`DiskFullError` and leaves ``path`` as it was (the last complete
    checkpoint or result stays); the temp file is removed.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        _raise_if_full(err, path)
        raise
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            _raise_if_full(err, path)
        raise


def _raise_if_full(err: OSError, path: Path) -> None:
    if err.errno in FULL:
        raise DiskFullError(path) from None


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
    """``torch.save`` atomically. Serialised in memory first, then written in one call: torch's
    writer turns a full disk into an opaque RuntimeError, a plain write raises ENOSPC."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))

"""What a queue call brings back: a few tar files of run summaries and one queue-summary.json.

A device call returns at most 8 files of 16 MiB each, 64 MiB in all. The bundle holds, per finished
run, ``config.yaml``, ``final.json`` and ``metrics.jsonl`` (plots when there is room: they go in
last) and, per finished study or benchmark, its output files; never checkpoints. Members are
spread over ``runs-1.tar.gz`` ... so that no file passes the limits; what does not fit is listed in
the summary's ``left_out``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from longtail.errors import LongtailError
from longtail.io import atomic_write_json

MAX_FILES = 8
MAX_FILE_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 64 * 2**20
SUMMARY = "queue-summary.json"
ESSENTIAL = ("config.yaml", "final.json", "metrics.jsonl")
PLOTS = ("per_class.png", "probe_per_class.png")
_SLACK = 64 * 2**10  # headroom per tar for its headers and the summary file


def _members(finished: dict[str, Path]) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(essential, optional) members as (name in the tar, source file)."""
    essential, optional = [], []
    for run in finished.values():
        if (run / "config.yaml").is_file():  # a training run folder
            essential += [(f"{run.name}/{f}", run / f) for f in ESSENTIAL if (run / f).is_file()]
            optional += [(f"{run.name}/{f}", run / f) for f in PLOTS if (run / f).is_file()]
        else:  # a study's or benchmark's outputs folder
            for path in sorted(run.glob("*")):
                if path.is_file():
                    (essential if path.suffix in (".json", ".md") else optional).append(
                        (f"{run.name}/{path.name}", path)
                    )
    return essential, optional


def write_bundle(out: Path, summary: dict[str, Any], finished: dict[str, Path]) -> dict[str, Any]:
    """Write the tars and queue-summary.json into ``out``; return what went where."""
    for old in out.glob("runs-*.tar.gz"):
        old.unlink()
    essential, optional = _members(finished)
    per_tar = MAX_FILE_BYTES - _SLACK
    budget = min(MAX_TOTAL_BYTES - _SLACK, per_tar * (MAX_FILES - 1))
    tars: list[list[tuple[str, Path]]] = [[]]
    sizes, total, left_out = [0], 0, []
    for group in (essential, optional):
        for name, path in group:
            size = path.stat().st_size + 1024  # the tar header and padding
            if size > per_tar or total + size > budget:
                left_out.append(name)
                continue
            if sizes[-1] + size > per_tar:
                if len(tars) == MAX_FILES - 1:
                    left_out.append(name)
                    continue
                tars.append([])
                sizes.append(0)
            tars[-1].append((name, path))
            sizes[-1] += size
            total += size
    files = []
    for i, members in enumerate(t for t in tars if t):
        path = out / f"runs-{i + 1}.tar.gz"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, source in members:
                tar.add(source, arcname=name)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        files.append(path.name)
    bundle = {"files": [*files, SUMMARY], "left_out": left_out}
    atomic_write_json(out / SUMMARY, {**summary, "bundle": bundle})
    return bundle


def read_summary(bundle: Path) -> dict[str, Any]:
    path = bundle / SUMMARY
    return json.loads(path.read_text())


def extract(bundle: Path, into: Path) -> None:
    """Unpack every tar of a bundle into ``into`` (names are checked: no absolute or .. paths)."""
    for tar_path in sorted(bundle.glob("runs-*.tar.gz")):
        try:
            with tarfile.open(tar_path, "r:gz") as tar:
                tar.extractall(into, filter="data")
        except (tarfile.TarError, OSError, EOFError) as err:
            raise LongtailError(
                f"{tar_path} cannot be unpacked ({err}): fetch the bundle again"
            ) from None

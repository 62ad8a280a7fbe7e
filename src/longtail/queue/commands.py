"""The process a queue entry runs: its command line, its data pack, and where its outputs land.

Every entry runs as its own ``python -m longtail.cli ...`` (or benchmark script) process, so K of them
can share one device and one that fails cannot take the others down.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from longtail.config import Config, load_config
from longtail.data.config import DataConfig
from longtail.data.subset import subset_fields
from longtail.queue.spec import Entry

CPU_EVAL_EVERY = 10  # CPU entries evaluate every 10 epochs (and after the last): ~8% of a run


@dataclass(frozen=True)
class Device:
    """Where the queue runs: ``name`` for train.device, ``kind`` the estimate key of owed.yaml."""

    name: str  # cpu | cuda
    kind: str  # cpu | h200 | ...
    threads: int = 0  # CPU threads per job (0: torch's default)


def pack_name(data: DataConfig, whole: bool = False) -> str:
    """The file name of the pack that holds ``data``'s training images (``longtail pack``).

    Runs whose subsets are the same images share one pack: the name is the dataset, the ratio and a
    digest of every field that chooses the subset (``longtail.data.subset.subset_fields``).
    """
    if whole:
        return f"{data.dataset}_whole.npz"
    fields = json.dumps(subset_fields(data), sort_keys=True, default=str)
    digest = hashlib.sha1(fields.encode()).hexdigest()[:8]
    return f"{data.dataset}_r{data.imbalance_ratio:g}_{digest}.npz"


def entry_config(entry: Entry) -> Config:
    """The resolved config an entry trains (recipe <- overrides <- seed); a study's first method."""
    return load_config(entry.recipe, [*entry.overrides, f"train.seed={entry.seed}"])


def pack_for(entry: Entry, packs: Path | None) -> Path | None:
    """The pack file an entry reads on the device, when the folder ``packs`` holds it."""
    if packs is None:
        return None
    if entry.kind == "study":
        from longtail.studies.spec import load_spec

        recipe = next(iter(load_spec(entry.recipe).methods.values()))
        path = packs / pack_name(load_config(recipe).data, whole=True)
    else:
        path = packs / pack_name(entry_config(entry).data)
    return path if path.is_file() else None


def output_dir(entry: Entry, runs: Path) -> Path:
    """Where a study's or benchmark's outputs go (train runs make their own run folders)."""
    return runs / entry.id


def build_command(
    entry: Entry,
    device: Device,
    runs: Path,
    pack: Path | None = None,
    init_run: Path | None = None,
    resume: Path | None = None,
) -> list[str]:
    """The argv of one entry's process."""
    python = [sys.executable, "-m", "longtail.cli"]
    dev = [f"train.device={device.name}", "train.progress=false"]
    if device.threads:
        dev.append(f"train.threads={device.threads}")
    if resume is not None:
        return [*python, "train", f"resume={resume}", *dev]
    data = [] if pack is None else ["data.dataset=pack", f"data.root={pack}"]
    cpu = [f"eval.every={CPU_EVAL_EVERY}"] if device.name == "cpu" else []
    if entry.kind == "train":
        init = [] if init_run is None else [f"init.run={init_run}"]
        return [
            *python, "train", entry.recipe, *entry.overrides, *data, *init, *dev, *cpu,
            f"train.seed={entry.seed}", f"out_dir={runs}", f"name={entry.id}",
        ]  # fmt: skip
    out = output_dir(entry, runs)
    if entry.kind == "study":
        results = out / Path(entry.results).name
        return [
            *python, "study", entry.recipe, *entry.overrides, *data, *dev, *cpu,
            f"study.results={results}", f"out_dir={out / 'runs'}",
        ]  # fmt: skip
    assert entry.command is not None
    argv = shlex.split(entry.command.replace("{pack}", str(pack or "")))
    return [sys.executable, *argv, "--out", str(out / f"{entry.id}.json")]

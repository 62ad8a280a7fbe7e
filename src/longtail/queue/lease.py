"""A GPU lease, planned: which owed entries it runs, the packs they read, and its device command.

``scripts/lease.py`` builds the carry from this plan (wheels, packs) and prints the device call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from longtail.config import DataConfig, load_config
from longtail.errors import LongtailError
from longtail.queue.commands import entry_config, pack_name
from longtail.queue.spec import Entry, Queue

COMMAND_LIMIT = 2000  # characters of one device command
CALL_LIMIT_S = 600  # one device command
STARTUP_S = 45  # wheels, torch import, pack decoding: headroom inside the call


@dataclass
class LeasePlan:
    entries: list[Entry]
    packs: dict[str, tuple[DataConfig, bool]] = field(default_factory=dict)  # name -> (data, whole)
    command: str = ""
    jobs: int = 1
    timeout_s: int = CALL_LIMIT_S


def _pack_source(entry: Entry) -> tuple[str, DataConfig, bool]:
    """(pack file name, the data config to pack, whole split?) of an entry."""
    if entry.kind == "study":
        from longtail.studies.spec import load_spec

        recipe = next(iter(load_spec(entry.recipe).methods.values()))
        cfg = load_config(recipe)
        return pack_name(cfg.data, whole=True), cfg.data, True
    cfg = entry_config(entry)
    return pack_name(cfg.data), cfg.data, False


def plan_lease(
    queue: Queue,
    queue_arg: str,
    priority: int | None = None,
    only: list[str] | None = None,
    jobs: int | None = None,
    timeout_s: int = CALL_LIMIT_S,
) -> LeasePlan:
    """The owed GPU entries of ``priority`` (or the ids ``only``), their packs and the command."""
    owed = [e for e in queue.ordered("h200") if e.status == "owed" and e.estimate_s("h200")]
    chosen = [e for e in owed if (e.id in only if only else e.priority == priority)]
    if not chosen:
        raise LongtailError("no owed GPU entry matches: check --priority / --only")
    plan = LeasePlan(chosen, jobs=jobs or len(chosen), timeout_s=timeout_s)
    for entry in chosen:
        if entry.kind == "benchmark" and "{pack}" not in (entry.command or ""):
            continue  # a benchmark that reads no data
        name, data, whole = _pack_source(entry)
        plan.packs.setdefault(name, (data, whole))
    plan.command = (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade"
        " --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 &&"
        f" python3 -m longtail.cli queue run {queue_arg} --device cuda --jobs {plan.jobs}"
        f" --budget {timeout_s - STARTUP_S} --out $OUT --runs /tmp/runs --packs .gpu --only "
        + " ".join(e.id for e in chosen)
    )
    if len(plan.command) > COMMAND_LIMIT:
        raise LongtailError(
            f"the device command is {len(plan.command)} characters (> {COMMAND_LIMIT}): lease fewer"
            " entries (--only)"
        )
    return plan


def carry_bytes(paths: list[Path]) -> int:
    """Bytes of files and folders (recursively)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total

"""The owed-runs queue file: every full-protocol run an issue asks for that nobody has run yet.

``reports/results/owed.yaml`` holds ``version: 1`` and a ``runs:`` list; each entry::

    id: c10-r100-ce                 # unique, lowercase [a-z0-9-]
    kind: train                     # train | study | benchmark
    recipe: recipes/cifar10_lt/ce_r100.yaml   # the recipe, study spec, or recipe a benchmark times
    overrides: []                   # key=value, applied after the recipe
    seed: 0
    issue: 5                        # the issue it serves
    results: reports/results/cifar10_lt.json  # the results file it feeds
    priority: 1                     # lower runs first (file order breaks ties)
    priority_cpu: -3                # optional: the order on a CPU, where it differs (issue 13)
    minutes: {cpu: 230, h200: 3}    # estimate alone on that device; null: does not run there
    after: null                     # the id of the earlier stage it needs (init.run)
    status: owed                    # owed | done
    command: null                   # benchmark: the script and its flags, run with python3

``longtail queue merge`` marks merged entries ``status: done`` and records ``done:`` (device, run,
top-1); the file is rewritten with its leading comment block kept, so keep comments there.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from longtail.errors import LongtailError
from longtail.io import atomic_write_text

KINDS = ("train", "study", "benchmark")
STATUSES = ("owed", "done")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_REQUIRED = ("id", "kind", "recipe", "issue", "results", "priority", "minutes")


@dataclass
class Entry:
    id: str
    kind: str
    recipe: str
    issue: int
    results: str
    priority: int
    minutes: dict[str, float | None]
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    after: str | None = None
    status: str = "owed"
    command: str | None = None
    priority_cpu: int | None = None
    done: dict[str, Any] | None = None

    def rank(self, device_kind: str | None = None) -> int:
        """Its place in the order on ``device_kind`` (lower first)."""
        if device_kind == "cpu" and self.priority_cpu is not None:
            return self.priority_cpu
        return self.priority

    def estimate_s(self, device_kind: str) -> float | None:
        """Seconds alone on ``device_kind`` (cpu, h200, ...); None where it does not run there."""
        minutes = self.minutes.get(device_kind)
        return None if minutes is None else 60.0 * float(minutes)


@dataclass
class Queue:
    path: Path
    entries: list[Entry]
    header: str = ""  # the leading comment block, kept when the file is rewritten

    def by_id(self, entry_id: str) -> Entry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise LongtailError(f"{self.path} has no entry {entry_id!r}: check the id")

    def ordered(self, device_kind: str | None = None) -> list[Entry]:
        """Entries by priority on ``device_kind``, file order within one priority."""
        return sorted(self.entries, key=lambda e: e.rank(device_kind))

    def save(self) -> None:
        runs = [
            {k: v for k, v in asdict(e).items() if v is not None or k in ("after",)}
            for e in self.entries
        ]
        body = yaml.safe_dump({"version": 1, "runs": runs}, sort_keys=False, width=100)
        atomic_write_text(self.path, self.header + body)


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#") and line.strip():
            break
        lines.append(line)
    return "".join(lines)


def _entry(raw: Any, where: str, root: Path) -> Entry:
    if not isinstance(raw, dict):
        raise LongtailError(f"{where} is not a mapping: write each run as 'id: ..., recipe: ...'")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise LongtailError(f"{where} lacks {', '.join(missing)}: every entry names them")
    known = {f for f in Entry.__dataclass_fields__}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise LongtailError(
            f"{where} has unknown key {unknown[0]!r}: use {', '.join(sorted(known))}"
        )
    entry = Entry(**raw)
    name = f"{where} ({entry.id})"
    checks = [
        (isinstance(entry.id, str) and bool(_ID.match(entry.id)), "id must be lowercase [a-z0-9-]"),
        (entry.kind in KINDS, f"kind must be one of {', '.join(KINDS)}"),
        (entry.status in STATUSES, f"status must be one of {', '.join(STATUSES)}"),
        (type(entry.priority) is int, "priority must be an integer"),
        (
            entry.priority_cpu is None or isinstance(entry.priority_cpu, int),
            "priority_cpu must be an integer",
        ),
        (isinstance(entry.seed, int), "seed must be an integer"),
        (
            isinstance(entry.overrides, list)
            and all(isinstance(o, str) and "=" in o for o in entry.overrides),
            "overrides must be a list of key=value strings",
        ),
        (
            isinstance(entry.minutes, dict)
            and all(
                v is None or (isinstance(v, int | float) and v > 0) for v in entry.minutes.values()
            ),
            "minutes must map a device kind to a positive number or null",
        ),
        (
            (entry.kind == "benchmark") == bool(entry.command),
            "a benchmark (and only it) has a command",
        ),
        (
            isinstance(entry.recipe, str) and (root / entry.recipe).is_file(),
            f"recipe {entry.recipe} does not exist",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            raise LongtailError(f"{name}: {problem}: fix the queue file")
    return entry


def load_queue(path: str | Path, root: str | Path = ".") -> Queue:
    """Read and validate a queue file; recipe paths resolve against ``root`` (the repository)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise LongtailError(
            f"cannot read queue {path} ({err.strerror}): pass reports/results/owed.yaml"
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise LongtailError(f"queue {path} is not valid YAML{at}: fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise LongtailError(f"queue {path} has no 'runs:' list: see reports/results/owed.yaml")
    if doc.get("version", 1) != 1:
        raise LongtailError(f"queue {path} is version {doc.get('version')}, this longtail reads 1")
    entries = [_entry(raw, f"{path} runs[{i}]", Path(root)) for i, raw in enumerate(doc["runs"])]
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise LongtailError(f"{path}: id {entry.id!r} appears twice: give each run its own id")
        if entry.after is not None and entry.after not in seen:
            raise LongtailError(
                f"{path}: {entry.id} runs after {entry.after!r}, which is not an earlier entry:"
                " list the first stage before it"
            )
        seen.add(entry.id)
    return Queue(path, entries, _header(text))

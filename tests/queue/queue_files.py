"""Writers of the queue tests' files: a tiny full-protocol recipe and queue files (tests/queue)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HEADER = (
    "# A test queue: this leading comment block must survive a rewrite.\n"
    "#\n"
    "#   and so must its indented lines.\n"
)

RECIPE = """\
name: tiny
method: CE
data: {{dataset: fashion_mnist, root: {root}, cache_dir: null, imbalance_ratio: 10}}
model: {{name: resnet20, kwargs: {{width: 0.25}}}}
train: {{batch_size: 16, epochs: 2}}
probe: {{balanced_per_class: 20, iterations: 10}}
"""


def write_recipe(path: Path, idx_root: Path) -> Path:
    """The tiny full-protocol recipe (two epochs, a small probe) on the idx data at ``idx_root``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECIPE.format(root=idx_root))
    return path


def entry(entry_id: str, recipe: Path | str, results: Path | str, **fields: Any) -> dict[str, Any]:
    """One queue entry as written in the file: a train run with a 30 s CPU estimate by default."""
    return {
        "id": entry_id,
        "kind": "train",
        "recipe": str(recipe),
        "issue": 1,
        "results": str(results),
        "priority": 1,
        "minutes": {"cpu": 0.5},
        **fields,
    }


def write_queue(path: Path, runs: list[dict[str, Any]], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"version": 1, "runs": runs}, sort_keys=False))
    return path


@dataclass
class QueueRun:
    """One real ``run_queue`` call over the shared test queue, and what it left behind."""

    base: Path
    queue: Path
    runs: Path  # the run folders (and queue-state.json, logs/)
    out: Path  # the bundle
    recipe: Path
    entries: list[dict[str, Any]]
    summary: dict[str, Any]
    printed: str  # run_queue's stdout
    wall_s: float

    def outcome(self, entry_id: str) -> dict[str, Any]:
        found = [o for o in self.summary["entries"] if o["id"] == entry_id]
        assert len(found) == 1, f"{entry_id} is in the summary {len(found)} times"
        return found[0]

    def started(self) -> list[str]:
        return re.findall(r"^queue: started (\S+) ", self.printed, flags=re.M)

    def state(self) -> dict[str, str]:
        """queue-state.json ({} when it was never written)."""
        path = self.runs / "queue-state.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def run_folders(self, entry_id: str) -> list[Path]:
        pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(entry_id)}(-\d+)?$")
        return [p for p in self.runs.iterdir() if p.is_dir() and pattern.match(p.name)]

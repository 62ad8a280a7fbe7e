"""How far a queued run has come, read from its run folder (config.yaml, metrics.jsonl)."""

from __future__ import annotations

import contextlib
import json
import re
import statistics
from pathlib import Path

import yaml


def _name_of(run: Path) -> str | None:
    """The ``name`` in a run folder's config.yaml (None until it is written): ``ce``'s folder is
    not ``ce-2``'s, though both match ``*-ce-2``."""
    try:
        return str(yaml.safe_load((run / "config.yaml").read_text())["name"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None


class RunProgress:
    """Epochs done, seconds per epoch and images/s of one run folder (``run`` None until found)."""

    def __init__(self, run: Path | None) -> None:
        self.run = run
        self.epochs: int | None = None
        self.epochs_done = 0
        self._epoch_s: list[float] = []
        self._images_per_s: list[float] = []
        self._pattern: re.Pattern[str] | None = None
        self._where: Path | None = None
        self._since = 0.0
        self._name = ""

    @classmethod
    def expected(cls, runs: Path, name: str, since: float) -> RunProgress:
        """A run ``longtail train ... name=NAME out_dir=RUNS`` is about to create."""
        progress = cls(None)
        progress._pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
        progress._where, progress._since, progress._name = runs, since, name
        return progress

    def find(self) -> bool:
        """Look for the expected run folder; True when it was found just now."""
        if self.run is not None or self._pattern is None or self._where is None:
            return False
        found = [
            p for p in self._where.iterdir()
            if p.is_dir() and self._pattern.match(p.name) and p.stat().st_mtime >= self._since
            and _name_of(p) == self._name
        ]  # fmt: skip
        if not found:
            return False
        self.run = max(found, key=lambda p: p.name)
        return True

    def refresh(self) -> None:
        self.find()
        if self.run is None:
            return
        if self.epochs is None:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
                self.epochs = int(
                    yaml.safe_load((self.run / "config.yaml").read_text())["train"]["epochs"]
                )
        try:
            lines = (self.run / "metrics.jsonl").read_text().splitlines()
        except OSError:
            return
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a line being written
        self.epochs_done = max((int(r.get("epoch", 0)) for r in records), default=0)
        self._epoch_s = [float(r["epoch_s"]) for r in records if "epoch_s" in r]
        self._images_per_s = [float(r["images_per_s"]) for r in records if "images_per_s" in r]

    def fraction_left(self) -> float:
        """The share of the run's epochs still to train (1 when unknown)."""
        self.refresh()
        if not self.epochs:
            return 1.0
        return max(0.0, (self.epochs - self.epochs_done) / self.epochs)

    def slowdown(self, estimate_s: float, elapsed_s: float) -> float | None:
        """Projected / estimated time of this run, once two epochs are done (None before)."""
        if len(self._epoch_s) < 2 or not self.epochs or estimate_s <= 0:
            return None
        per_epoch = statistics.median(self._epoch_s[-5:])
        projected = elapsed_s + per_epoch * max(0, self.epochs - self.epochs_done)
        return projected / estimate_s

    def images_per_s(self) -> float | None:
        """Mean training images/s over the epochs done (the first, warming up, left out)."""
        values = self._images_per_s[1:] or self._images_per_s
        return round(statistics.fmean(values), 1) if values else None

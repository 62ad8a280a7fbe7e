"""Run a study end to end: ``longtail study SPEC.yaml [study.key=value] [key=value ...]``.

1. Read the spec and apply the ``study.*`` overrides; every other override applies to every run.
2. Plan the runs and load every run's config, so a typo fails before anything trains.
3. For each run, reuse a complete run folder in ``out_dir`` with the same name and the same
   resolved config (an interrupted study continues where it stopped); else train it.
4. Merge a record per run into the results JSON (a record replaces the one with its key) and
   write the markdown table (``.md``) and the plot (``.png``) beside it.
"""

from __future__ import annotations

import glob
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from longtail import runtime
from longtail.config import Config, load_config, to_dict
from longtail.errors import LongtailError
from longtail.eval.monitor import upgrade_record
from longtail.io import atomic_write_text
from longtail.run_folder import FINAL, STATUS, RunFolder
from longtail.strategies.registry import trains_classifier
from longtail.studies.equal_size import EQUAL_SIZE
from longtail.studies.records import merge_records
from longtail.studies.spec import RunPlan, StudyKind, StudySpec, load_spec, split_overrides
from longtail.studies.sweep import SWEEP
from longtail.train.trainer import train  # a module attribute, so tests can swap in a fake

KINDS: dict[str, StudyKind] = {"sweep": SWEEP, "equal_size": EQUAL_SIZE}


def run_study(spec_path: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Train (or reuse) every run of the study, write its results; return the results JSON path."""
    study_overrides, run_overrides = split_overrides(overrides)
    spec = load_spec(spec_path, study_overrides)
    kind = KINDS[spec.study]
    _check_uncontrolled(spec, kind, spec.overrides, "the spec's overrides")
    _check_uncontrolled(spec, kind, run_overrides, "the command line")
    planned = [(p, _load(spec, p, run_overrides)) for p in kind.plan(spec)]
    _check_same_epochs(planned)

    records = []
    for i, (run_plan, cfg) in enumerate(planned, 1):
        where = f"study {spec.study} [{i}/{len(planned)}] {run_plan.method} {run_plan.label}"
        run = find_complete_run(cfg)
        if run is not None:
            _say(f"{where}: reusing {run}")
        else:
            _say(f"{where}: training {cfg.name} in {cfg.out_dir}")
            start = time.perf_counter()
            run = train(cfg)
            _say(f"{where}: done in {time.perf_counter() - start:.0f} s: {run}")
        final = upgrade_record(json.loads((run / FINAL).read_text()),
                               representation=not trains_classifier(cfg.strategy.name))  # fmt: skip
        records.append(kind.record(run_plan, cfg, final, run))

    merged = merge_records(spec.results, records, kind.key_fields)
    atomic_write_text(spec.results.with_suffix(".md"), kind.table(merged))
    kind.plot(merged, spec.results.with_suffix(".png"))
    return spec.results


def find_complete_run(cfg: Config) -> Path | None:
    """The newest complete run folder in ``cfg.out_dir`` whose resolved config equals ``cfg``
    (``train.precision=auto`` as it resolves here, as the folder records it)."""
    out_dir = Path(cfg.out_dir)
    if not out_dir.is_dir():
        return None
    device = runtime.resolve_device(cfg.train.device)

    def resolved(c: Config) -> dict[str, Any]:
        return to_dict(replace(c, train=runtime.resolve_precision(c.train, device)))

    want = resolved(cfg)
    # folders are <stamp>-<name>, or <stamp>-<name>-<k> when two started in the same second
    for path in sorted(out_dir.glob(f"*-{glob.escape(cfg.name)}*"), reverse=True):
        if not (path / FINAL).is_file() or _state(path) != "complete":
            continue
        try:
            saved = RunFolder.open(path).read_config()
        except LongtailError:
            continue  # a damaged or foreign folder is never reused
        if resolved(saved) == want:
            return path
    return None


def _state(path: Path) -> str | None:
    try:
        status: Any = json.loads((path / STATUS).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return status.get("state") if isinstance(status, dict) else None


def _load(spec: StudySpec, run_plan: RunPlan, run_overrides: list[str]) -> Config:
    """The run's config: recipe <- the study's overrides <- the spec's <- the command line's."""
    overrides = [*run_plan.overrides, *spec.overrides, *run_overrides]
    try:
        return load_config(run_plan.recipe, overrides)
    except LongtailError as err:
        raise LongtailError(f"{spec.source}, {run_plan.method} {run_plan.label}: {err}") from None


def _check_uncontrolled(spec: StudySpec, kind: StudyKind, overrides: list[str], where: str) -> None:
    """A key the study sets per run (ratio, total, name ...) must not be overridden for all runs."""
    controlled = kind.controlled(spec)
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in controlled:
            raise LongtailError(
                f"{where} sets {key}, which the {spec.study} study sets for each run: drop it"
                " (change study.ratios, study.total or study.pretrain instead)"
            )


def _check_same_epochs(planned: list[tuple[RunPlan, Config]]) -> None:
    """One study call writes records of one training length, so its table compares like with like."""
    first_plan, first = planned[0]
    for run_plan, cfg in planned[1:]:
        if cfg.train.epochs != first.train.epochs:
            raise LongtailError(
                f"{first_plan.method} trains {first.train.epochs} epochs but {run_plan.method}"
                f" {cfg.train.epochs}: pass train.epochs=N so all runs of the study match"
            )


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

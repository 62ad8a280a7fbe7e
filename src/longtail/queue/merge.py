"""``longtail queue merge BUNDLE``: a queue call's finished runs into the results files.

Each finished train run's summary files are kept in ``runs/<entry id>/`` beside the queue file (the
provenance of every merged number: config.yaml, final.json, metrics.jsonl), and each results file
is rebuilt by the report code from every kept run that feeds it, so the seeds of one row may come
from different bundles and devices. Studies merge their records, benchmarks copy their JSON. A run
that failed, did not finish or was shortened (:func:`longtail.protocol.shortened`) is never merged,
and the output says which and why. Merging the same bundle twice changes nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.io import atomic_write_text
from longtail.protocol import shortened
from longtail.queue.bundle import ESSENTIAL, PLOTS, SUMMARY, extract, read_summary
from longtail.queue.spec import Entry, Queue, load_queue
from longtail.run_folder import RunFolder

KEPT = "runs"  # beside the queue file: reports/results/runs/<entry id>/


def _bundle_dir(bundle: Path) -> Path:
    """A bundle is a folder (what a device call returns) or one of its tars beside the summary."""
    if bundle.is_dir():
        return bundle
    if bundle.is_file() and (bundle.parent / SUMMARY).is_file():
        return bundle.parent
    raise LongtailError(f"{bundle} is not a queue bundle (no {SUMMARY}): pass the folder it is in")


def _check_train(entry: Entry, run: Path) -> list[str]:
    """Why this run may not be merged (empty: it may)."""
    if not (run / "final.json").is_file() or not (run / "config.yaml").is_file():
        return ["its config.yaml or final.json is not in the bundle"]
    cfg = RunFolder.open(run).read_config()
    reasons = shortened(cfg, load_config(entry.recipe))
    if cfg.recipe != entry.recipe:
        reasons.append(f"it ran recipe {cfg.recipe}, the entry names {entry.recipe}")
    return reasons


def _keep(run: Path, into: Path) -> None:
    """Copy a run's summary files to ``into`` (replacing what was there), atomically per file."""
    into.mkdir(parents=True, exist_ok=True)
    for name in (*ESSENTIAL, *PLOTS):
        source = run / name
        if source.is_file():
            tmp = into / f".{name}.tmp"
            shutil.copyfile(source, tmp)
            tmp.replace(into / name)


def _rebuild(queue: Queue, results: str, kept: Path) -> str:
    """Rebuild one results file from every kept run of the entries that feed it. Runs that are
    no table row (a first stage without a method name) feed nothing; with no row, nothing is
    written."""
    from longtail.report import collect, report

    runs = [
        kept / e.id
        for e in queue.entries
        if e.kind == "train" and e.results == results and (kept / e.id / "final.json").is_file()
    ]
    return report(runs, Path(results)) if runs and collect(runs) else ""


def _merge_study(entry: Entry, folder: Path) -> None:
    from longtail.studies.records import merge_records
    from longtail.studies.runner import KINDS
    from longtail.studies.spec import load_spec

    source = folder / Path(entry.results).name
    if not source.is_file():
        raise LongtailError(f"{entry.id}: the bundle has no {source.name}: run the study again")
    kind = KINDS[load_spec(entry.recipe).study]
    records = json.loads(source.read_text())
    results = Path(entry.results)
    merged = merge_records(results, records, kind.key_fields)
    atomic_write_text(results.with_suffix(".md"), kind.table(merged))
    kind.plot(merged, results.with_suffix(".png"))


def _merge_benchmark(entry: Entry, folder: Path) -> None:
    source = folder / f"{entry.id}.json"
    if not source.is_file():
        raise LongtailError(f"{entry.id}: the bundle has no {source.name}: run the benchmark again")
    target = Path(entry.results)
    target = target / source.name if not target.suffix else target
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def merge_bundle(
    bundle: str | Path, queue_path: str | Path = "reports/results/owed.yaml"
) -> list[str]:
    """Merge a bundle's finished, full-protocol runs; mark their entries done; return one line each.

    Paths in the queue (recipes, results files) resolve against the current folder: run it from the
    repository root. Merged runs' summary files are kept in ``runs/<id>/`` beside the queue file.
    """
    queue = load_queue(queue_path)
    kept = queue.path.parent / KEPT
    lines: list[str] = []
    touched: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp_name:
        folder = _bundle_dir(Path(bundle))
        summary: dict[str, Any] = read_summary(folder)
        unpacked = Path(tmp_name) / "unpacked"
        extract(folder, unpacked)
        for item in summary.get("entries", []):
            entry_id, status = item.get("id"), item.get("status")
            try:
                entry = queue.by_id(str(entry_id))
            except LongtailError:
                lines.append(f"not merged: {entry_id}: not in {queue.path}")
                continue
            if status != "finished":
                lines.append(f"not merged: {entry_id}: {status} ({item.get('reason')})")
                continue
            if entry.status == "done":
                lines.append(f"already merged: {entry_id}")
                continue
            run = unpacked / str(item.get("run"))
            if entry.kind == "train":
                reasons = _check_train(entry, run)
                if reasons:
                    lines.append(
                        f"not merged: {entry_id}: shortened or wrong run: {'; '.join(reasons)}"
                    )
                    continue
                _keep(run, kept / entry.id)
                touched.add(entry.results)
            elif entry.kind == "study":
                _merge_study(entry, run)
            else:
                _merge_benchmark(entry, run)
            entry.status = "done"
            entry.done = {
                "device": summary.get("device_name"),
                "run": item.get("run"),
                "top1": item.get("top1"),
                "date": summary.get("date"),
            }
            lines.append(f"merged: {entry_id} -> {entry.results}" + (
                f" (top-1 {item['top1']:.2f})" if item.get("top1") is not None else ""))  # fmt: skip
    for results in sorted(touched):
        _rebuild(queue, results, kept)
    if any(line.startswith("merged:") for line in lines):
        queue.save()
    return lines

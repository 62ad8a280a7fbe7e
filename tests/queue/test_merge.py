"""merge.py: a bundle's full runs into the results files, idempotently; the rest refused with why."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from queue_files import HEADER, QueueRun, write_queue

from longtail.errors import LongtailError
from longtail.queue.merge import merge_bundle
from longtail.queue.runner import run_queue

# one xdist worker runs this module (its fixtures train once): see tests/test_dist.py
pytestmark = pytest.mark.xdist_group("queue")


def _merge_queue(queue_run: QueueRun, folder: Path, drop: tuple[str, ...] = ()) -> Path:
    """The shared run's queue entries, feeding a results file of this test's own."""
    results = folder / "results" / "tiny.json"
    runs = [{**e, "results": str(results)} for e in queue_run.entries if e["id"] not in drop]
    return write_queue(folder / "reports" / "owed.yaml", runs)


def _results(queue: Path) -> Path:
    return queue.parent.parent / "results" / "tiny.json"


def _snapshot(queue: Path) -> dict[str, bytes]:
    """Every file merge writes: the queue file, the results JSON and .md, the kept run files."""
    files = [queue, _results(queue), _results(queue).with_suffix(".md")]
    files += sorted((queue.parent / "runs").rglob("*"))
    return {str(p): p.read_bytes() for p in files if p.is_file()}


@pytest.fixture
def merged(
    queue_run: QueueRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[str]]:
    """The shared bundle merged once into a fresh queue (gpu-only left out of it)."""
    monkeypatch.chdir(tmp_path)
    queue = _merge_queue(queue_run, tmp_path, drop=("gpu-only",))
    return queue, merge_bundle(queue_run.out, queue)


def test_full_run_merged_the_rest_refused_with_reasons(
    merged: tuple[Path, list[str]], queue_run: QueueRun
) -> None:
    """The full run is merged; the shortened, failed, skipped and unknown ones are refused, each with
    its reason, in the summary's order."""
    queue, lines = merged
    top1 = queue_run.outcome("ce")["top1"]
    missing = queue_run.base / "missing"
    assert lines[0] == f"merged: ce -> {_results(queue)} (top-1 {top1:.2f})"
    assert lines[1].startswith("not merged: too-long: skipped (estimate 1000.0 min > ")
    assert lines[2].startswith("not merged: bad-config: failed (its config does not load: optim.lr")
    assert lines[3] == f"not merged: gpu-only: not in {queue}"
    assert lines[4] == ("not merged: ce-short: shortened or wrong run: train.max_steps_per_epoch=2")
    assert lines[5] == (
        f"not merged: fails: failed (exit 2: error: data.root {missing} does not exist: point"
        " data.root at the fashion_mnist data folder)"
    )
    assert len(lines) == 6


def test_merge_writes_results_keeps_runs_and_marks_done(
    merged: tuple[Path, list[str]], queue_run: QueueRun
) -> None:
    """One CE record in the results JSON and its table; the run's files kept in runs/ce/ beside the
    queue file; the entry `done` with its device, run and top-1; the header comment kept."""
    queue, _ = merged
    records = json.loads(_results(queue).read_text())
    final = json.loads((queue_run.runs / queue_run.outcome("ce")["run"] / "final.json").read_text())
    assert [(r["method"], r["top1_per_seed"]) for r in records] == [
        ("CE", [round(final["top1"], 2)])
    ]
    assert records[0]["recipe"] == str(queue_run.recipe) and records[0]["epochs"] == 2
    assert "| CE | " in _results(queue).with_suffix(".md").read_text()
    source = queue_run.runs / queue_run.outcome("ce")["run"]
    kept = queue.parent / "runs" / "ce"
    names = ("config.yaml", "final.json", "metrics.jsonl", "per_class.png", "probe_per_class.png")
    assert sorted(p.name for p in kept.iterdir()) == sorted(names)
    for name in names:
        assert (kept / name).read_bytes() == (source / name).read_bytes(), name
    assert not (queue.parent / "runs" / "ce-short").exists()
    text = queue.read_text()
    assert text.startswith(HEADER)
    status = {r["id"]: r for r in yaml.safe_load(text)["runs"]}
    assert status["ce"]["status"] == "done"
    assert status["ce"]["done"] == {
        "device": queue_run.summary["device_name"], "run": source.name, "top1": final["top1"],
        "date": queue_run.summary["date"],
    }  # fmt: skip
    assert {i: r["status"] for i, r in status.items() if i != "ce"} == dict.fromkeys(
        ("ce-short", "fails", "too-long", "bad-config"), "owed")  # fmt: skip
    assert all("done" not in r for i, r in status.items() if i != "ce")


def test_merging_twice_changes_nothing(merged: tuple[Path, list[str]], queue_run: QueueRun) -> None:
    """The same bundle again (here named by one of its tars): `already merged`, and the queue file,
    results JSON, table and kept files are byte-identical."""
    queue, first = merged
    before = _snapshot(queue)
    assert len(before) == 8  # queue, results .json and .md, five kept files
    again = merge_bundle(queue_run.out / "runs-1.tar.gz", queue)
    assert again[0] == "already merged: ce"
    assert again[1:] == first[1:] and not any(line.startswith("merged:") for line in again)
    assert _snapshot(queue) == before


def test_merge_refuses_a_run_of_another_recipe(
    queue_run: QueueRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry naming a different recipe file (same content) does not take this run."""
    monkeypatch.chdir(tmp_path)
    copy = shutil.copy(queue_run.recipe, tmp_path / "copy.yaml")
    queue = _merge_queue(queue_run, tmp_path)
    text = queue.read_text().replace(f"recipe: {queue_run.recipe}", f"recipe: {copy}")
    queue.write_text(text)
    lines = merge_bundle(queue_run.out, queue)
    assert lines[0] == (
        f"not merged: ce: shortened or wrong run: it ran recipe {queue_run.recipe}, the entry names"
        f" {copy}"
    )
    assert queue.read_text() == text and not _results(queue).exists()


def test_not_a_bundle(tmp_path: Path, queue_run: QueueRun) -> None:
    """A file with no queue-summary.json beside it is a one-line error."""
    stray = tmp_path / "x.tar.gz"
    stray.write_bytes(b"")
    with pytest.raises(LongtailError, match="is not a queue bundle"):
        merge_bundle(stray, queue_run.queue)


def test_done_entries_are_not_run_again(
    merged: tuple[Path, list[str]], queue_run: QueueRun, tmp_path: Path
) -> None:
    """After the merge marks ce done, a queue call asked for it lists and starts nothing."""
    queue, _ = merged
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = run_queue(queue, 60.0, jobs=1, out=tmp_path / "again", only=["ce"],
                            runs=queue_run.runs, device="cpu", poll_s=0.5)  # fmt: skip
    assert summary["entries"] == [] and summary["finished"] == 0
    assert printed.getvalue().startswith("queue: 0 entries on cpu")
    assert "started" not in printed.getvalue()
    assert len(queue_run.run_folders("ce")) == 1


def test_a_benchmark_merges_its_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished benchmark's JSON is copied to its results path (a folder: under its own name)."""
    from longtail.queue.bundle import write_bundle

    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "device-runs" / "speed"
    outputs.mkdir(parents=True)
    (outputs / "speed.json").write_text('{"images_per_s": 1234.5}')
    (tmp_path / "recipe.yaml").write_text("name: r\n")
    out = tmp_path / "bundle"
    out.mkdir()
    item = {"id": "speed", "status": "finished", "kind": "benchmark", "run": "speed", "top1": None}
    write_bundle(out, {"device_name": "NVIDIA H200", "date": "2026-01-01", "entries": [item]},
                 {"speed": outputs})  # fmt: skip
    queue = write_queue(tmp_path / "owed.yaml", [
        {"id": "speed", "kind": "benchmark", "recipe": "recipe.yaml", "issue": 9,
         "results": "reports/benchmarks", "priority": 6, "minutes": {"h200": 3},
         "command": "benchmarks/speed.py"},
    ])  # fmt: skip
    assert merge_bundle(out, queue) == ["merged: speed -> reports/benchmarks"]
    target = tmp_path / "reports" / "benchmarks" / "speed.json"
    assert target.read_text() == '{"images_per_s": 1234.5}'
    (saved,) = yaml.safe_load(queue.read_text())["runs"]
    assert saved["status"] == "done" and saved["done"]["device"] == "NVIDIA H200"

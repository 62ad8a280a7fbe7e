"""runner.py and progress.py: real queue runs on the CPU (priority, skips, failures, the budget stop)
and the progress a run folder shows."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from queue_files import QueueRun, entry, write_queue

from longtail.errors import LongtailError
from longtail.queue.bundle import SUMMARY
from longtail.queue.progress import RunProgress
from longtail.queue.runner import Scheduler, run_queue

# one xdist worker runs this module (its fixtures train once): see tests/test_dist.py
pytestmark = pytest.mark.xdist_group("queue")


def test_priority_decides_what_starts_first(queue_run: QueueRun) -> None:
    """The priority-1 entry starts before the priority-2 one listed above it, and priority 3 last."""
    assert queue_run.started() == ["ce", "ce-short", "fails"]
    logs = {p.name for p in (queue_run.runs / "logs").iterdir()}
    assert logs == {"ce.log", "ce-short.log", "fails.log"}
    # the summary lists them in priority order, file order within a priority
    ids = [o["id"] for o in queue_run.summary["entries"]]
    assert ids == ["ce", "too-long", "bad-config", "gpu-only", "ce-short", "fails"]


def test_an_estimate_that_cannot_fit_is_skipped_unstarted(queue_run: QueueRun) -> None:
    """1000 minutes in a 300 s budget: skipped with both numbers, no run folder, no log."""
    outcome = queue_run.outcome("too-long")
    assert outcome["status"] == "skipped"
    assert re.fullmatch(r"estimate 1000\.0 min > \d\.\d min left of the budget", outcome["reason"])
    assert outcome["estimate_s"] == 60_000.0
    assert not (queue_run.runs / "logs" / "too-long.log").exists()
    assert queue_run.run_folders("too-long") == [] and "too-long" not in queue_run.state()


def test_an_entry_without_an_estimate_here_is_skipped(queue_run: QueueRun) -> None:
    """minutes {cpu: null}: it does not run on this device."""
    outcome = queue_run.outcome("gpu-only")
    assert (outcome["status"], outcome["reason"]) == (
        "skipped", "no estimate for cpu: it does not run on this device")  # fmt: skip
    assert not (queue_run.runs / "logs" / "gpu-only.log").exists()


def test_a_config_that_does_not_load_fails_before_start(queue_run: QueueRun) -> None:
    """optim.lr=-1: failed with the config error, and no process was started."""
    outcome = queue_run.outcome("bad-config")
    assert outcome["status"] == "failed"
    assert outcome["reason"].startswith("its config does not load: optim.lr must be > 0")
    assert outcome["wall_s"] is None and not (queue_run.runs / "logs" / "bad-config.log").exists()


def test_a_failing_run_is_reported_and_the_others_finish(queue_run: QueueRun) -> None:
    """A child that fails at data loading is `failed` with its error line; the rest finish."""
    fails = queue_run.outcome("fails")
    assert fails["status"] == "failed" and fails["run"] is None
    missing = queue_run.base / "missing"
    assert fails["reason"] == (
        f"exit 2: error: data.root {missing} does not exist: point data.root at the fashion_mnist"
        " data folder"
    )
    for entry_id, method in (("ce", "CE"), ("ce-short", "CE-short")):
        outcome = queue_run.outcome(entry_id)
        assert outcome["status"] == "finished" and outcome["reason"] is None, outcome
        assert (outcome["epochs_done"], outcome["epochs"]) == (2, 2)
        assert outcome["top1"] is not None and outcome["images_per_s"] > 0
        assert outcome["estimate_s"] == 30.0 and outcome["wall_s"] > 0
        (folder,) = queue_run.run_folders(entry_id)
        assert outcome["run"] == folder.name
        assert json.loads((folder / "status.json").read_text())["state"] == "complete"
        top1 = json.loads((folder / "final.json").read_text())["top1"]
        assert outcome["top1"] == top1
        assert f"method: {method}" in (folder / "config.yaml").read_text()
    assert queue_run.summary["finished"] == 2


def test_the_child_runs_the_cpu_command(queue_run: QueueRun) -> None:
    """The log's first line is the command: the recipe, its overrides, threads and eval.every=10."""
    first = (queue_run.runs / "logs" / "ce-short.log").read_text().splitlines()[0]
    assert (
        first.startswith("$ ") and f" train {queue_run.recipe} train.max_steps_per_epoch=2" in first
    )
    threads = max(1, (os.cpu_count() or 1) // 2)  # two jobs share the cores
    for part in ("method=CE-short", "train.device=cpu", f"train.threads={threads}", "eval.every=10",
                 "train.seed=0", f"out_dir={queue_run.runs}", "name=ce-short"):  # fmt: skip
        assert f" {part}" in first, part


def test_state_maps_started_runs_to_their_folders(queue_run: QueueRun) -> None:
    """queue-state.json holds each started train run's folder (a failed-at-load run has none)."""
    state = queue_run.state()
    assert set(state) == {"ce", "ce-short"}
    for entry_id, folder in state.items():
        assert [Path(folder)] == queue_run.run_folders(entry_id)


def test_the_bundle_holds_the_finished_runs(queue_run: QueueRun) -> None:
    """The summary on disk is the one returned; the tars hold the finished runs' summaries only."""
    on_disk = json.loads((queue_run.out / SUMMARY).read_text())
    assert on_disk == json.loads(json.dumps(queue_run.summary))
    assert on_disk["device"] == "cpu" and on_disk["jobs"] == 2 and on_disk["mps"] == "off (CPU)"
    names = set()
    for tar_name in on_disk["bundle"]["files"][:-1]:
        with tarfile.open(queue_run.out / tar_name) as tar:
            names |= set(tar.getnames())
    runs = {queue_run.outcome(i)["run"] for i in ("ce", "ce-short")}
    expected = {f"{r}/{f}" for r in runs for f in ("config.yaml", "final.json", "metrics.jsonl",
                                                   "per_class.png", "probe_per_class.png")}  # fmt: skip
    assert names == expected and on_disk["bundle"]["left_out"] == []
    assert all(o["results"] == str(queue_run.base / "results" / "tiny.json")
               for o in on_disk["entries"])  # fmt: skip


def test_bad_arguments_are_one_line_errors(queue_run: QueueRun, tmp_path: Path) -> None:
    """--jobs 0, --budget 0, --out equal to the run folders, and an unknown --only id."""
    q = queue_run.queue
    with pytest.raises(LongtailError, match="--jobs must be >= 1"):
        run_queue(q, budget_s=10, jobs=0, out=tmp_path / "o", runs=tmp_path / "r", device="cpu")
    with pytest.raises(LongtailError, match="--budget > 0"):
        run_queue(q, budget_s=0, jobs=1, out=tmp_path / "o", runs=tmp_path / "r", device="cpu")
    with pytest.raises(LongtailError, match="--out and the run folders must differ"):
        run_queue(q, budget_s=10, jobs=1, out=tmp_path / "r", runs=tmp_path / "r", device="cpu")
    with pytest.raises(LongtailError, match="--only nope: no such entry"):
        run_queue(q, 10, 1, tmp_path / "o", only=["nope"], runs=tmp_path / "r", device="cpu")


def _quick_call(queue: Path, runs: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """A run_queue call whose 24 s budget leaves ~3 s to start anything (nothing here starts)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return run_queue(queue, 24.0, jobs=1, out=out, runs=runs, device="cpu", poll_s=0.5,
                         reserve_s=1, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory: pytest.TempPathFactory, recipe: Path) -> QueueRun:
    """One 5000-epoch entry with a 6 s estimate, in a 60 s budget (its deadline: 39 s in, room for the
    child to start and finish an epoch on a busy 2-core machine). 5000: an idle CPU trains ~370 of
    them in the 39 s, and the next calls' tests need well over half left (an estimate over 3 s)."""
    base = tmp_path_factory.mktemp("budget-run")
    entries = [entry("long", recipe, base / "r.json", overrides=["train.epochs=5000"],
                     minutes={"cpu": 0.1})]  # fmt: skip
    queue = write_queue(base / "owed.yaml", entries)
    runs, out = base / "runs", base / "out"
    printed = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stdout(printed):
        summary = run_queue(queue, 60.0, jobs=1, out=out, runs=runs, device="cpu", poll_s=0.5,
                            reserve_s=1)  # fmt: skip
    wall = time.monotonic() - t0
    return QueueRun(base, queue, runs, out, recipe, entries, summary, printed.getvalue(), wall)


def test_the_budget_stops_a_long_run_resumably(budget_run: QueueRun) -> None:
    """A run that cannot finish is stopped at the budget, within the budget: `unfinished`, its folder
    `interrupted` with its checkpoint, and the reason names the epochs done and the resume command."""
    budget = budget_run.summary["budget_s"]
    assert budget_run.wall_s <= budget and budget_run.summary["wall_s"] <= budget
    (outcome,) = budget_run.summary["entries"]
    assert outcome["status"] == "unfinished", outcome
    (folder,) = budget_run.run_folders("long")
    match = re.fullmatch(r"stopped at the budget after (\d+) of 5000 epochs \(resume: longtail"
                         r" train resume=(.+)\)", outcome["reason"])  # fmt: skip
    assert match, outcome["reason"]
    done = int(match.group(1))
    assert 1 <= done < 5000 and outcome["epochs_done"] == done and outcome["epochs"] == 5000
    assert match.group(2) == str(folder) and outcome["run"] == folder.name
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"
    assert (folder / "checkpoint.pt").is_file()
    assert budget_run.summary["finished"] == 0 and budget_run.summary["bundle"]["files"] == [
        SUMMARY
    ]


def test_the_next_call_knows_the_stopped_run(budget_run: QueueRun, tmp_path: Path) -> None:
    """The state file maps the entry to its folder, so a next call with too little budget to resume
    it reports it skipped with its estimate scaled by the epochs left (and starts nothing)."""
    (folder,) = budget_run.run_folders("long")
    log = budget_run.runs / "logs" / "long.log"
    log_size = log.stat().st_size
    again = _quick_call(budget_run.queue, budget_run.runs, tmp_path / "out")
    assert log.stat().st_size == log_size  # nothing was started
    assert budget_run.state() == {"long": str(folder)}
    (skipped,) = again["entries"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("estimate 0.1 min > ")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    left = (5000 - max(r["epoch"] for r in metrics)) / 5000
    assert left < 1 and skipped["estimate_s"] == pytest.approx(6.0 * left)


def test_a_finished_unmerged_run_goes_into_the_next_bundle(
    queue_run: QueueRun, tmp_path: Path
) -> None:
    """A run that finished in an earlier call is not run again: it is `finished` and bundled."""
    again = _quick_call(queue_run.queue, queue_run.runs, tmp_path / "out", only=["ce-short"])
    (outcome,) = again["entries"]
    assert (outcome["status"], outcome["reason"]) == ("finished", "finished in an earlier call")
    assert outcome["run"] == queue_run.outcome("ce-short")["run"]
    assert again["bundle"]["files"] == ["runs-1.tar.gz", SUMMARY]


def test_a_stopped_run_in_the_state_is_resumed_with_the_epochs_left(
    budget_run: QueueRun, tmp_path: Path
) -> None:
    """A state file naming the interrupted folder: its estimate is scaled by the fraction of epochs
    left (here too long for the time left, so skipped, and nothing is started)."""
    (folder,) = budget_run.run_folders("long")
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "queue-state.json").write_text(json.dumps({"long": str(folder)}))
    summary = _quick_call(budget_run.queue, runs, tmp_path / "out")
    (skipped,) = summary["entries"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("estimate 0.1 min > ")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    left = (5000 - max(r["epoch"] for r in metrics)) / 5000
    assert left < 1 and skipped["estimate_s"] == pytest.approx(6.0 * left)
    assert not (runs / "logs").exists()


def test_a_complete_run_in_the_state_is_bundled_not_rerun(
    queue_run: QueueRun, tmp_path: Path
) -> None:
    """A state file naming a complete folder: `finished in an earlier call`, bundled, not started."""
    folder = queue_run.runs / queue_run.outcome("ce-short")["run"]
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "queue-state.json").write_text(json.dumps({"ce-short": str(folder)}))
    summary = _quick_call(queue_run.queue, runs, tmp_path / "out", only=["ce-short"])
    (outcome,) = summary["entries"]
    assert (outcome["status"], outcome["reason"]) == ("finished", "finished in an earlier call")
    assert (
        outcome["run"] == folder.name and outcome["top1"] == queue_run.outcome("ce-short")["top1"]
    )
    assert outcome["epochs_done"] == 2 and not (runs / "logs").exists()
    with tarfile.open(tmp_path / "out" / "runs-1.tar.gz") as tar:
        assert f"{folder.name}/final.json" in tar.getnames()


def test_a_second_stage_without_its_first_is_blocked(recipe: Path, tmp_path: Path) -> None:
    """An `after` entry whose first stage was skipped, or is done but has no run folder here, is
    blocked with the reason, and nothing starts."""
    r = tmp_path / "r.json"
    queue = write_queue(tmp_path / "owed.yaml", [
        entry("first", recipe, r, minutes={"cpu": 1000}),
        entry("second", recipe, r, after="first"),
        entry("old", recipe, r, status="done"),
        entry("third", recipe, r, after="old"),
    ])  # fmt: skip
    summary = _quick_call(queue, tmp_path / "runs", tmp_path / "out")
    got = {o["id"]: (o["status"], o["reason"]) for o in summary["entries"]}
    assert got["first"][0] == "skipped" and set(got) == {"first", "second", "third"}
    assert got["second"] == ("blocked", "needs first finished first (its run folder is not here)")
    assert got["third"] == ("blocked", "needs old finished first (its run folder is not here)")
    assert not (tmp_path / "runs" / "logs").exists()


def test_on_a_cpu_priority_cpu_decides_the_order(recipe: Path, tmp_path: Path) -> None:
    """The CPU order (priority_cpu) is the order entries are tried and reported in."""
    r = tmp_path / "r.json"
    queue = write_queue(tmp_path / "owed.yaml", [
        entry("a", recipe, r, priority=1, minutes={"cpu": 1000}),
        entry("b", recipe, r, priority=2, priority_cpu=0, minutes={"cpu": 1000}),
    ])  # fmt: skip
    summary = _quick_call(queue, tmp_path / "runs", tmp_path / "out")
    assert [(o["id"], o["status"]) for o in summary["entries"]] == [
        ("b", "skipped"),
        ("a", "skipped"),
    ]


# --- progress.py and the scheduler, on hand-written run folders ---


def _fake_run(
    folder: Path, epochs: int, records: list[dict[str, float]], tail: str = "", name: str = "x"
) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"name: {name}\ntrain:\n  epochs: {epochs}\n")
    lines = [json.dumps(r) for r in records]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n" + tail)
    return folder


def test_progress_reads_epochs_speed_and_what_is_left(tmp_path: Path) -> None:
    """Epochs done, the fraction left, images/s without the warm-up epoch, a half-written line."""
    records = [{"epoch": 1, "epoch_s": 9.0, "images_per_s": 10.0},
               {"epoch": 2, "epoch_s": 2.0, "images_per_s": 40.0},
               {"epoch": 3, "epoch_s": 2.0, "images_per_s": 60.0}]  # fmt: skip
    progress = RunProgress(_fake_run(tmp_path / "run", 10, records, tail='{"epoch": 4, "ep'))
    assert progress.fraction_left() == pytest.approx(0.7)
    assert (progress.epochs, progress.epochs_done) == (10, 3)
    assert progress.images_per_s() == 50.0
    # projected = elapsed + median(9, 2, 2) s x 7 epochs left, over the estimate
    assert progress.slowdown(estimate_s=40.0, elapsed_s=26.0) == pytest.approx((26 + 14) / 40)
    assert RunProgress(tmp_path / "absent").fraction_left() == 1.0


def test_progress_has_no_slowdown_before_two_epochs(tmp_path: Path) -> None:
    progress = RunProgress(_fake_run(tmp_path / "run", 10, [{"epoch": 1, "epoch_s": 3.0}]))
    progress.refresh()
    assert progress.epochs_done == 1 and progress.slowdown(60.0, 5.0) is None


def test_expected_run_folder_is_found_by_name_and_time(tmp_path: Path) -> None:
    """The folder `longtail train name=ID` creates is found; older ones and other names are not."""
    old = _fake_run(tmp_path / "20260101-000000-ce", 2, [], name="ce")
    since = time.time() + 0.5
    progress = RunProgress.expected(tmp_path, "ce", since)
    assert not progress.find() and progress.run is None  # only an older folder exists
    time.sleep(0.6)
    _fake_run(tmp_path / "20260101-000001-ce-short", 2, [], name="ce-short")
    assert not progress.find()
    new = _fake_run(tmp_path / "20260101-000002-ce", 2, [], name="ce")
    assert progress.find() and progress.run == new != old
    assert not progress.find()  # found once


def test_expected_run_folder_is_not_another_entrys(tmp_path: Path) -> None:
    """Entries 'ce' and 'ce-2' started together: each finds its own folder."""
    since = time.time() - 1.0
    mine = _fake_run(tmp_path / "20260101-000000-ce", 2, [], name="ce")
    _fake_run(tmp_path / "20260101-000000-ce-2", 2, [], name="ce-2")
    progress = RunProgress.expected(tmp_path, "ce", since)
    assert progress.find() and progress.run == mine


def test_scheduler_uses_the_median_slowdown() -> None:
    """No factors: 1; otherwise the median (upper for an even count) scales each estimate."""
    sched = Scheduler(deadline=100.0)
    assert sched.slowdown() == 1.0 and sched.fits(100.0, now=0.0) and not sched.fits(101, 0.0)
    sched.factors.update(a=1.0, b=3.0, c=2.0)
    assert sched.slowdown() == 2.0 and sched.fits(50.0, 0.0) and not sched.fits(51.0, 0.0)
    sched.factors["d"] = 4.0
    assert sched.slowdown() == 3.0


def _processes_mentioning(text: str) -> list[int]:
    """The pids whose command line contains ``text`` (Linux /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in cmdline:
            found.append(int(proc.name))
    return found


def test_a_terminated_queue_stops_its_runs_and_writes_its_bundle(
    recipe: Path, tmp_path: Path
) -> None:
    """`kill` (SIGTERM) of `longtail queue run` mid-run: the child does not train on unwatched; its
    run folder is `interrupted` with its checkpoint, the bundle's summary says so, and the command
    ends with a one-line error naming the resume."""
    entries = [entry("sigterm-long", recipe, tmp_path / "r.json",
                     overrides=["train.epochs=500"], minutes={"cpu": 0.1})]  # fmt: skip
    queue = write_queue(tmp_path / "owed.yaml", entries)
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = [sys.executable, "-m", "longtail.cli", "queue", "run", str(queue), "--device", "cpu",
            "--budget", "600", "--resumable", "--runs", str(runs), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*-sigterm-long/checkpoint.pt")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    (folder,) = [p.parent for p in runs.glob("*-sigterm-long/checkpoint.pt")]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: the queue was interrupted:"), stderr
    assert _processes_mentioning(str(runs)) == []
    assert json.loads((folder / "status.json").read_text())["state"] == "interrupted"
    assert (folder / "checkpoint.pt").is_file()
    summary = json.loads((out / SUMMARY).read_text())
    (outcome,) = summary["entries"]
    assert summary["interrupted"] is True and outcome["status"] == "unfinished"
    assert outcome["reason"].startswith("stopped as the queue was interrupted after "), outcome

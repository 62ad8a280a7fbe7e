"""``longtail queue run``: the queue's next entries on one device, K side by side, inside a budget.

Entries run in priority order as separate processes. One is started only when its estimate fits the
time left: the queue's minutes for this device, scaled by how the runs already going compare with
their own estimates after their first epochs (K runs on one GPU each run slower than alone). At the
budget, what still runs is stopped (its checkpoint stays: the next call resumes it from its folder)
and reported unfinished; a run that fails is reported with its error and the others go on. A queue
that is itself interrupted (Ctrl-C, SIGTERM, SIGHUP) stops its runs the same way and still writes
its bundle: no child goes on training unwatched, nothing finished is left out of the bundle.

Run folders live in ``runs`` (outside the work tree: default ``~/longtail-runs/queue``) with a
``queue-state.json`` mapping entry ids to their run folders, so a later call resumes a run a
session's end killed, and a run that finished but was never merged goes into the next bundle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtail import runtime
from longtail.errors import LongtailError
from longtail.eval.monitor import headline
from longtail.io import atomic_write_json
from longtail.queue.bundle import write_bundle
from longtail.queue.commands import Device, build_command, entry_config, output_dir, pack_for
from longtail.queue.gpu import GpuMemory, Mps
from longtail.queue.progress import RunProgress
from longtail.queue.spec import Entry, load_queue

STATE = "queue-state.json"
STOP_GRACE_S = 20.0  # SIGINT, then this long to write "interrupted", then SIGKILL
DEFAULT_RUNS = Path.home() / "longtail-runs" / "queue"


@dataclass
class Job:
    entry: Entry
    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    estimate_s: float
    progress: RunProgress
    outputs: Path  # a study's or benchmark's outputs folder (a train run finds its run folder)
    resumed: bool = False

    @property
    def result_path(self) -> Path:
        """The run folder of a train entry once it exists, else the outputs folder."""
        return self.progress.run or self.outputs


@dataclass
class Outcome:
    """One line of queue-summary.json."""

    id: str
    status: str  # finished | failed | unfinished | skipped | blocked
    reason: str | None = None
    kind: str = "train"
    results: str | None = None
    wall_s: float | None = None
    estimate_s: float | None = None
    epochs_done: int | None = None
    epochs: int | None = None
    images_per_s: float | None = None
    peak_gpu_memory_mb: float | None = None
    peak_memory_mb: float | None = None
    run: str | None = None  # the run folder's name (train) or the outputs folder (study, benchmark)
    top1: float | None = None
    resumed: bool = False


@dataclass
class Scheduler:
    """Which waiting entry starts next, and how much longer than estimated runs are taking."""

    deadline: float
    factors: dict[str, float] = field(default_factory=dict)  # id -> projected / estimated

    def slowdown(self) -> float:
        """Median projected/estimated over the runs with two epochs behind them (1 before any)."""
        if not self.factors:
            return 1.0
        values = sorted(self.factors.values())
        return values[len(values) // 2]

    def fits(self, estimate_s: float, now: float) -> bool:
        return now + estimate_s * self.slowdown() <= self.deadline


def _device(name: str, jobs: int) -> Device:
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    threads = max(1, (os.cpu_count() or 1) // jobs)  # K processes share the cores
    if name == "cpu":
        return Device("cpu", "cpu", threads=threads)
    if not torch.cuda.is_available():
        raise LongtailError("--device cuda but no GPU is visible: use --device cpu")
    gpu = torch.cuda.get_device_name(0).lower()
    kind = next((k for k in ("h200", "h100", "a100") if k in gpu), "h200")
    return Device("cuda", kind, threads=threads)


def _read_state(runs: Path) -> dict[str, str]:
    path = runs / STATE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise LongtailError(f"{path} is damaged: delete it (runs there are not resumed)") from None
    return {str(k): str(v) for k, v in state.items()}


def _status(run: Path) -> str | None:
    """The run's state as :meth:`RunFolder.read_state` reads it; None without a status."""
    from longtail.run_folder import RunFolder  # imports torch: only once a run exists

    state = RunFolder(run).read_state()
    return None if state == "unknown" else state


def _estimate(entry: Entry, device: Device) -> float | None:
    """Seconds alone on this device; a GPU without its own estimate uses the H200's."""
    estimate = entry.estimate_s(device.kind)
    if estimate is None and device.name == "cuda" and device.kind not in entry.minutes:
        estimate = entry.estimate_s("h200")
    return estimate


def run_queue(
    queue_path: str | Path,
    budget_s: float,
    jobs: int,
    out: str | Path,
    device: str = "auto",
    only: list[str] | None = None,
    runs: str | Path | None = None,
    packs: str | Path | None = None,
    poll_s: float = 5.0,
    reserve_s: float | None = None,
    resumable: bool = False,
) -> dict[str, Any]:
    """Run the queue's owed entries; write the bundle to ``out``; return the summary.

    ``resumable``: also start a train entry that cannot finish inside the budget (a CPU run of
    several hours in a shorter session): at the budget it stops with its checkpoint, and the next
    call on the same ``runs`` folder resumes it.
    """
    t0 = time.monotonic()
    if jobs < 1 or budget_s <= 0:
        raise LongtailError("--jobs must be >= 1 and --budget > 0 seconds")
    queue = load_queue(queue_path)
    out, runs_dir = Path(out), Path(runs) if runs else DEFAULT_RUNS
    dev = _device(device, jobs)
    if out.resolve() == runs_dir.resolve():
        raise LongtailError(
            "--out and the run folders must differ: the bundle is a separate folder"
        )
    runs_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    pack_dir = Path(packs) if packs else None
    state = _read_state(runs_dir)
    reserve = reserve_s if reserve_s is not None else min(120.0, max(10.0, 0.03 * budget_s))
    sched = Scheduler(deadline=t0 + budget_s - reserve - STOP_GRACE_S)
    outcomes: dict[str, Outcome] = {}
    if only:
        unknown = [i for i in only if i not in {e.id for e in queue.entries}]
        if unknown:
            raise LongtailError(f"--only {unknown[0]}: no such entry in {queue.path}")
    waiting = [
        e for e in queue.ordered(dev.kind) if e.status == "owed" and (not only or e.id in only)
    ]
    done_ids = {e.id for e in queue.entries if e.status == "done"}
    finished_runs: dict[str, Path] = {}

    for entry in list(waiting):  # finished in an earlier call, never merged
        prev = Path(state[entry.id]) if entry.id in state else None
        if prev is not None and _status(prev) == "complete":
            waiting.remove(entry)
            finished_runs[entry.id] = prev
            outcomes[entry.id] = _finished(entry, prev, None, "finished in an earlier call")
    for entry in list(waiting):
        problem = _config_problem(entry, pack_dir)
        if problem is not None:
            waiting.remove(entry)
            outcomes[entry.id] = Outcome(entry.id, "failed", problem, kind=entry.kind)
        elif _estimate(entry, dev) is None:
            waiting.remove(entry)
            outcomes[entry.id] = Outcome(entry.id, "skipped", f"no estimate for {dev.kind}: "
                                         "it does not run on this device", kind=entry.kind)  # fmt: skip

    mps = Mps.start(dev, jobs)
    gpu_memory = GpuMemory(dev)
    print(f"queue: {len(waiting)} entries on {dev.name} ({dev.kind}), {jobs} at a time,"
          f" budget {budget_s:.0f} s; MPS {mps.describe()}", flush=True)  # fmt: skip
    running: list[Job] = []
    interrupted = False
    signals = ExitStack()  # SIGTERM / SIGHUP stop the queue as Ctrl-C does
    signals.enter_context(runtime.sigterm_as_interrupt("SIGHUP"))
    try:
        while waiting or running:
            now = time.monotonic()
            for job in list(running):
                job.progress.refresh()
                _remember(state, runs_dir, job)
                factor = job.progress.slowdown(job.estimate_s, now - job.started)
                if factor is not None:
                    sched.factors[job.entry.id] = factor
                gpu_memory.sample(job.entry.id, job.proc.pid)
                if job.proc.poll() is not None:
                    running.remove(job)
                    outcome = _ended(job, now, gpu_memory)
                    outcomes[job.entry.id] = outcome
                    if outcome.status == "finished":
                        finished_runs[job.entry.id] = job.result_path
                    print(f"queue: {job.entry.id} {outcome.status}"
                          f"{': ' + outcome.reason if outcome.reason else ''}", flush=True)  # fmt: skip
            if now >= sched.deadline:
                break
            for entry in list(waiting):
                if len(running) >= jobs:
                    break
                blocked = _blocked(entry, finished_runs, done_ids, waiting, running, state)
                if blocked == "wait":
                    continue
                if blocked:
                    waiting.remove(entry)
                    outcomes[entry.id] = Outcome(entry.id, "blocked", blocked, kind=entry.kind)
                    continue
                estimate = _estimate(entry, dev) or 0.0
                prev = Path(state[entry.id]) if entry.id in state else None
                resume = prev if prev is not None and (prev / "checkpoint.pt").is_file() else None
                left = sched.deadline - now
                if resume is not None:
                    estimate *= RunProgress(prev).fraction_left()
                spills = resumable and entry.kind == "train"
                if not spills and not sched.fits(estimate, now):
                    waiting.remove(entry)
                    outcomes[entry.id] = Outcome(
                        entry.id, "skipped", f"estimate {estimate * sched.slowdown() / 60:.1f} min"
                        f" > {max(left, 0) / 60:.1f} min left of the budget", kind=entry.kind,
                        estimate_s=estimate)  # fmt: skip
                    continue
                waiting.remove(entry)
                init_run = finished_runs.get(entry.after) if entry.after else None
                if entry.after and init_run is None and entry.after in state:
                    init_run = Path(state[entry.after])
                job = _start(entry, dev, runs_dir, pack_for(entry, pack_dir), init_run, resume,
                             estimate)  # fmt: skip
                running.append(job)
                _remember(state, runs_dir, job)
                print(f"queue: started {entry.id} ({'resumed' if resume else 'new'},"
                      f" ~{estimate * sched.slowdown() / 60:.1f} min)", flush=True)  # fmt: skip
            if running or waiting:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        why = "as the queue was interrupted" if interrupted else "at the budget"
        with runtime.signals_ignored("SIGINT", "SIGTERM", "SIGHUP"):  # nothing cuts the stop short
            stopped = _stop(running, time.monotonic(), gpu_memory, why)
            mps.stop()
        signals.close()
        for outcome in stopped:
            outcomes[outcome.id] = outcome
        for entry in waiting:
            outcomes.setdefault(entry.id, Outcome(entry.id, "skipped", "the budget ran out before"
                                                  " it could start", kind=entry.kind))  # fmt: skip
    ordered = [outcomes[e.id] for e in queue.ordered(dev.kind) if e.id in outcomes]
    for outcome in ordered:
        outcome.results = queue.by_id(outcome.id).results
    summary = {
        "queue": str(queue.path),
        "device": dev.name,
        "device_kind": dev.kind,
        "device_name": _device_name(dev),
        "jobs": jobs,
        "mps": mps.describe(),
        "budget_s": budget_s,
        "wall_s": round(time.monotonic() - t0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "finished": sum(o.status == "finished" for o in ordered),
        "interrupted": interrupted,
        "entries": [o.__dict__ for o in ordered],
    }
    summary["bundle"] = write_bundle(out, summary, finished_runs)
    return summary


def _remember(state: dict[str, str], runs: Path, job: Job) -> None:
    """Record a train job's run folder in queue-state.json as soon as it exists (a later call
    resumes it, or bundles it when it finished)."""
    run = job.progress.run
    if job.entry.kind == "train" and run is not None and state.get(job.entry.id) != str(run):
        state[job.entry.id] = str(run)
        atomic_write_json(runs / STATE, state)


def _config_problem(entry: Entry, packs: Path | None) -> str | None:
    """Why an entry cannot start (checked before anything starts), or None."""
    if entry.kind == "benchmark" and "{pack}" in (entry.command or ""):
        if pack_for(entry, packs) is None:
            return "its command reads a data pack: pass --packs (scripts/lease.py builds it)"
        return None
    if entry.kind != "train":
        return None
    try:
        entry_config(entry)
    except LongtailError as err:
        return f"its config does not load: {err}"
    return None


def _device_name(dev: Device) -> str:
    import torch

    if dev.name == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu ({dev.threads} threads)"


def _blocked(
    entry: Entry,
    finished: dict[str, Path],
    done: set[str],
    waiting: list[Entry],
    running: list[Job],
    state: dict[str, str],
) -> str | None:
    """None: may start; "wait": its first stage is still to come; else why it cannot run."""
    if entry.after is None or entry.after in finished:
        return None
    if any(j.entry.id == entry.after for j in running) or any(e.id == entry.after for e in waiting):
        return "wait"
    if (
        entry.after in done
        and entry.after in state
        and _status(Path(state[entry.after])) == "complete"
    ):
        return None
    return f"needs {entry.after} finished first (its run folder is not here)"


def _start(
    entry: Entry,
    dev: Device,
    runs: Path,
    pack: Path | None,
    init_run: Path | None,
    resume: Path | None,
    estimate: float,
) -> Job:
    logs = runs / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{entry.id}.log"
    argv = build_command(entry, dev, runs, pack=pack, init_run=init_run, resume=resume)
    if entry.kind != "train":
        output_dir(entry, runs).mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    handle.write(f"$ {' '.join(argv)}\n".encode())
    handle.flush()
    started = time.monotonic()
    since = time.time() - 1.0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    handle.close()
    progress = RunProgress(resume) if resume else RunProgress.expected(runs, entry.id, since)
    if entry.kind == "train" and resume is None:
        progress.epochs = entry_config(entry).train.epochs
    outputs = output_dir(entry, runs)
    return Job(entry, proc, started, log, estimate, progress, outputs, resumed=resume is not None)


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt (the
    trainer then marks the run interrupted). A queue started in the background by a shell inherits
    SIGINT ignored, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1][:300]


def _finished(entry: Entry, run: Path, wall: float | None, reason: str | None) -> Outcome:
    progress = RunProgress(run)
    progress.refresh()
    final: dict[str, Any] = {}
    if entry.kind == "train":
        try:
            final = json.loads((run / "final.json").read_text())
        except (OSError, ValueError):
            final = {}
    return Outcome(
        entry.id, "finished", reason, kind=entry.kind, wall_s=wall,
        epochs_done=progress.epochs_done, epochs=progress.epochs,
        images_per_s=progress.images_per_s(), peak_memory_mb=final.get("peak_memory_mb"),
        run=run.name, top1=headline(final)[1],
    )  # fmt: skip


def _ended(job: Job, now: float, gpu: GpuMemory) -> Outcome:
    wall = round(now - job.started, 1)
    entry, run = job.entry, job.progress.run
    rc = job.proc.returncode
    ok = rc == 0 and (entry.kind != "train" or (run is not None and _status(run) == "complete"))
    if ok:
        outcome = _finished(entry, job.result_path, wall, None)
    else:
        outcome = Outcome(entry.id, "failed", f"exit {rc}: {_last_line(job.log)}", kind=entry.kind,
                          wall_s=wall, epochs_done=job.progress.epochs_done,
                          epochs=job.progress.epochs, run=run.name if run else None)  # fmt: skip
    outcome.estimate_s = round(job.estimate_s, 1)
    outcome.peak_gpu_memory_mb = gpu.peak(entry.id)
    outcome.resumed = job.resumed
    return outcome


def _stop(running: list[Job], now: float, gpu: GpuMemory, why: str) -> list[Outcome]:
    """Stop what still runs (at the budget, or as the queue is interrupted): SIGINT (the trainer
    marks the run interrupted and keeps its checkpoint), then SIGKILL after STOP_GRACE_S."""
    for job in running:
        if job.proc.poll() is None:
            os.killpg(job.proc.pid, signal.SIGINT)
    end = time.monotonic() + STOP_GRACE_S
    for job in running:
        try:
            job.proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(job.proc.pid, signal.SIGKILL)
            job.proc.wait()
    outcomes = []
    for job in running:
        job.progress.refresh()
        done = job.progress.epochs_done
        where = f" (resume: longtail train resume={job.progress.run})" if job.progress.run else ""
        outcomes.append(Outcome(
            job.entry.id, "unfinished", f"stopped {why} after {done} of"
            f" {job.progress.epochs} epochs{where}", kind=job.entry.kind,
            wall_s=round(now - job.started, 1), estimate_s=round(job.estimate_s, 1),
            epochs_done=done, epochs=job.progress.epochs, images_per_s=job.progress.images_per_s(),
            peak_gpu_memory_mb=gpu.peak(job.entry.id),
            run=job.progress.run.name if job.progress.run else None, resumed=job.resumed,
        ))  # fmt: skip
    if running:
        print(f"queue: stopped {len(running)} {why}", file=sys.stderr, flush=True)
    return outcomes

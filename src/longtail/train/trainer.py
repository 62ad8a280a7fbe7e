"""Start a supervised run, or continue one exactly from its run folder."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from longtail import launch, runtime
from longtail.config import Config, merge_config, overrides_tree, to_dict, to_yaml
from longtail.data.prepared import PreparedData
from longtail.data.setup import prepare_data, replaying
from longtail.deploy.model_files import run_record, write_model_files
from longtail.errors import LongtailError
from longtail.eval.run_page import CURVES, plot_curves, write_report
from longtail.io import DiskFullError, atomic_write_json, atomic_write_text
from longtail.run_folder import CHECKPOINT, ELASTIC, INDEX, METRICS, PLOT, PROBE_PLOT, RunFolder
from longtail.strategies.decoupling import check_frozen, source_index_file
from longtail.train.build import TrainingParts, build_training
from longtail.train.loop import fit
from longtail.train.probe_run import check_probe_data
from longtail.train.tensorboard_log import require_tensorboard

# What may change when a run continues: its length and where and how it runs, never what it learns.
# The probes read the finished backbone only, so they may change too.
# optim.lr: the way on after a diverged loss (loop._check_finite); the run then differs from its
# recipe from the resumed step on, as its config.yaml records
RESUMABLE = ("train.epochs", "train.progress", "train.device", "train.threads", "probe", "log",
             "train.checkpoint_every_steps", "data.workers", "optim.lr")  # fmt: skip


def train(cfg: Config) -> Path:
    """Train as configured; return the run folder. Raises LongtailError on bad input or NaN loss.

    Data, model and augmentation are built before the folder exists, so a bad recipe or bad data
    leaves nothing behind. Under ``torchrun --max-restarts=R`` a restarted group continues the
    folder its first attempt made (found by torchrun's run id): one run, one folder.
    """
    cfg, device, shard = _place(_with_source_subset(cfg))
    earlier = _earlier_attempt(cfg, shard)
    if earlier is not None and (earlier / CHECKPOINT).is_file():
        return resume(earlier)
    require_tensorboard(cfg.log.tensorboard)
    data = prepare_data(cfg.data, device)
    check_probe_data(cfg.probe, cfg.data)  # a missing OOD set fails now, not after the last epoch
    parts = build_training(cfg, data, device, shard)
    if shard.main:  # one run, one folder: rank 0 creates it and tells the others where it is
        # an attempt killed before its first checkpoint: start again in its folder
        run = RunFolder(earlier) if earlier is not None else RunFolder.create(cfg.out_dir, cfg.name)
        run.claim()
        run.clear_results()
        atomic_write_text(run.file(METRICS), "")
        run.write_config(to_yaml(cfg))
        atomic_write_json(run.file(INDEX), data.index_record)
        if launch.elastic_run_id() is not None:
            atomic_write_json(run.file(ELASTIC), {"run_id": launch.elastic_run_id()})
    path = launch.share(str(run.path) if shard.main else "", shard)
    run = run if shard.main else RunFolder(Path(path), writes=False)
    return _run(cfg, data, device, run, parts, 0, None)


def _place(cfg: Config) -> tuple[Config, torch.device, launch.Shard]:
    """Threads, this rank's device and shard (torchrun), and ``cfg`` with ``train.precision=auto``
    resolved there (it reads and returns only ``train.*``; the whole config, for both callers)."""
    runtime.set_threads(cfg.train.threads)
    device, shard = launch.start(runtime.resolve_device(cfg.train.device))
    return replace(cfg, train=runtime.resolve_precision(cfg.train, device)), device, shard


def _earlier_attempt(cfg: Config, shard: launch.Shard) -> Path | None:
    """The folder an earlier attempt of this torchrun job made (``elastic.json`` holds torchrun's
    run id), on every rank; None on a first attempt and outside torchrun."""
    run_id = launch.elastic_run_id()
    if run_id is None or launch.restart_count() == 0:
        return None
    found = ""
    if shard.main:
        for folder in sorted(Path(cfg.out_dir).glob(f"*-{cfg.name}*"), reverse=True):
            try:
                record = json.loads((folder / ELASTIC).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("run_id") == run_id:
                found = str(folder)
                break
    found = launch.share(found, shard)
    return Path(found) if found else None


def _with_source_subset(cfg: Config) -> Config:
    """A run started from ``init.run`` trains on its source's subset (cRT on other images is wrong)."""
    index = source_index_file(cfg.init)
    if index is None:
        return cfg
    if cfg.data.index_file not in (None, index):
        raise LongtailError(
            f"data.index_file={cfg.data.index_file} differs from init.run's subset {index}: drop"
            " data.index_file (a stage trains on its source run's images)"
        )
    return replace(cfg, data=replace(cfg.data, index_file=index))


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Continue the run in ``run_dir`` from its last checkpoint, with its saved config and subset.

    Only ``RESUMABLE`` keys may be overridden (``train.epochs=300`` extends a run).
    """
    run = RunFolder.open(run_dir)
    saved = run.read_config()
    cfg = merge_config(
        [
            (f"{run.path}/config.yaml", to_dict(saved)),
            ("the command line", overrides_tree(list(overrides), RESUMABLE)),
        ]
    )
    state = run.load_checkpoint()
    cfg, device, shard = _place(cfg)  # an older folder's precision=auto resolves here
    run.writes = shard.main
    if shard.main:
        run.claim()  # before anything is touched: a live run's folder is refused
    try:  # a refusal below frees the folder again (an in-process caller may retry)
        return _continue(run, cfg, device, shard, state)
    except BaseException:
        run.release()
        raise


def _continue(
    run: RunFolder, cfg: Config, device: torch.device, shard: launch.Shard, state: dict[str, Any]
) -> Path:
    """The rest of :func:`resume`, in the claimed folder: check, rebuild, load, train on."""
    if cfg.train.epochs < state["epoch"]:
        raise LongtailError(
            f"train.epochs={cfg.train.epochs} is below the {state['epoch']} epochs already done:"
            " pass train.epochs >= that to continue"
        )
    require_tensorboard(cfg.log.tensorboard)  # log.* may change on a resume
    data = prepare_data(replaying(cfg.data, run.file(INDEX)), device)  # the exact saved subset
    check_probe_data(cfg.probe, cfg.data)
    parts = build_training(cfg, data, device, shard)
    parts.load_state_dict(state, str(run.file("checkpoint.pt")))
    try:
        runtime.load_rng_state(state["rng"])
    except (RuntimeError, KeyError, TypeError, ValueError):
        raise LongtailError(
            f"the RNG state in {run.path} does not fit this machine: resume on the device"
            " type that wrote it (train.device)"
        ) from None
    run.write_config(to_yaml(cfg))
    # "running" before the results go: a kill in between never leaves "complete" without final.json
    run.write_status("running", epoch=state["epoch"])
    run.clear_results()
    run.truncate_metrics(state["epoch"])
    within = state.get("within")  # a checkpoint from inside an epoch: continue at its next batch
    return _run(cfg, data, device, run, parts, state["epoch"], state["history"], within)


def _write_pages(run: RunFolder, cfg: Config, final: dict[str, Any]) -> None:
    """The pages a person reads (learning curves, report.md); the results are written already,
    so a failure here is a warning, never a failed run."""
    length = f"{final['epochs']} epochs" + (", shortened" if final["shortened"] else "")
    try:
        plot_curves(run.read_metrics(), run.file(CURVES), f"{cfg.name}: {length}")
        write_report(run.path, cfg, final, [PLOT, PROBE_PLOT, CURVES])
    except Exception as err:  # noqa: BLE001 -- any plotting or file problem
        print(
            f"warning: the run's pages were not written ({err}); its results are", file=sys.stderr
        )


def _write_failed(run: RunFolder, error: str) -> None:
    """status "failed", if the disk lets it: the error being raised matters more than the status
    (on a full disk the status stays "running", which a folder no process holds reads as stale)."""
    with contextlib.suppress(OSError):
        run.write_status("failed", error=error)


def _run(
    cfg: Config,
    data: PreparedData,
    device: torch.device,
    run: RunFolder,
    parts: TrainingParts,
    start_epoch: int,
    history: dict[str, Any] | None,
    within: dict[str, Any] | None = None,
) -> Path:
    """Fit, then write final.json; the status says how it ended; the folder is free afterwards."""
    if cfg.train.progress and run.writes:
        print(f"run folder: {run.path}", file=sys.stderr, flush=True)
    run.write_status("running", epoch=start_epoch)
    ended: str | None = None  # "complete" / "interrupted"; None: failed (launch.end_together)
    try:
        with runtime.sigterm_as_interrupt():
            final = fit(cfg, data, device, run, parts, start_epoch, history, within)
        if parts.frozen is not None:  # moco-v3's sanity check: the frozen part did not move
            check_frozen(parts.model, parts.frozen)
            final["frozen_tensors_unchanged"] = len(parts.frozen)
        final["peak_memory_mb"] = runtime.peak_memory_mb(device)
        if run.writes:  # final.json last of the results: its presence means they are all there
            write_model_files(run, parts.model, run_record(cfg, data))  # deploy/model_files.py
            _write_pages(run, cfg, final)
        run.write_final(final)
        run.write_status("complete")  # a kill just before: RunFolder.read_state reads "complete"
        ended = "complete"
    except KeyboardInterrupt:
        ended = "interrupted"
        run.write_status("interrupted")
        raise LongtailError(
            f"interrupted: continue with  longtail train resume={run.path}"
        ) from None
    except DiskFullError as err:  # the checkpoint before the failed write is whole (io.py)
        resumable = run.file(CHECKPOINT).is_file()
        full = err.then(f"continue with  longtail train resume={run.path}" if resumable
                        else "start the run anew (it had no checkpoint yet)")  # fmt: skip
        _write_failed(run, str(full))
        raise full from None
    except BaseException as err:
        _write_failed(run, f"{type(err).__name__}: {err}")
        raise
    finally:
        run.release()  # ended, failed or interrupted: the folder is free for a resume
        # torchrun: the ranks > 0 whose part went well wait for rank 0 to have written the folder
        word = launch.end_together(parts.shard, ended)
    if word != "complete":  # a rank > 0, told that rank 0 did not finish the folder
        raise LongtailError(f"rank 0 ended {run.path} {word}: its own error says why")
    return run.path

"""The epoch loop: steps, host syncs every few steps, evaluation, metrics, checkpoint each epoch.

Under torchrun every rank steps; rank 0 alone evaluates (the whole test set on one device: the
single-process numbers exactly, at the cost of the other ranks waiting for it), prints and writes.
The loss readout is the mean over ranks, i.e. the global batch's loss.
"""

from __future__ import annotations

import math
import platform
import time
from typing import Any

import torch

from longtail import launch, runtime
from longtail.config import Config
from longtail.data.prepared import PreparedData
from longtail.errors import LongtailError
from longtail.eval.monitor import GROUP_KEYS, monitor_names, monitor_prefix
from longtail.eval.plots import plot_per_class_accuracy
from longtail.optim.schedules import lr_factor
from longtail.protocol import shortened
from longtail.run_folder import CHECKPOINT, PLOT, PROBE_PLOT, RunFolder
from longtail.strategies.registry import trains_classifier
from longtail.train.build import TrainingParts, evaluate_model
from longtail.train.probe_run import probe_run
from longtail.train.progress import Progress
from longtail.train.tensorboard_log import TensorBoardLog

SYNC_EVERY = 25  # steps between host syncs (loss readout, NaN check, progress bar)


def fit(
    cfg: Config,
    data: PreparedData,
    device: torch.device,
    run: RunFolder,
    parts: TrainingParts,
    start_epoch: int = 0,
    history: dict[str, Any] | None = None,
    within: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train epochs ``start_epoch .. cfg.train.epochs - 1``; return the final.json record.

    ``history`` carries what spans a resume (train and wall seconds, best epoch). The checkpoint
    written after each epoch (and every ``train.checkpoint_every_steps`` steps within one) holds
    everything needed to continue bit for bit on CPU. ``within`` resumes inside ``start_epoch``:
    ``{"batch": batches done, "loss_sum": their summed loss, "epoch_s": their seconds}`` (the
    loader's state, already loaded, starts at the next batch).
    """
    t_start = time.perf_counter()
    # a representation run's evaluation is a kNN monitor: knn_top1 etc. (eval/monitor.py)
    named = monitor_prefix(not trains_classifier(cfg.strategy.name))
    best = f"best_{named}top1"
    history = {"train_s": 0.0, "wall_s": 0.0} if history is None else history
    wall_before = history["wall_s"]
    model, loader, shard = parts.model, parts.loader, parts.shard
    steps_per_epoch, epochs = len(loader), cfg.train.epochs
    resumed_at = int(within["batch"]) if within is not None else 0  # batches already done
    progress = Progress(
        total=(epochs - start_epoch) * steps_per_epoch - resumed_at,
        batch_size=cfg.train.batch_size,
        enabled=cfg.train.progress and shard.main,
    )
    summary: dict[str, Any] = {}
    every = cfg.train.checkpoint_every_steps
    board = TensorBoardLog(
        run.path, cfg.log.tensorboard and shard.main and run.writes, start_epoch + 1
    )
    for epoch in range(start_epoch, epochs):
        parts.start_epoch(cfg.train, epoch, device)
        model.train()
        done, before_s, loss_sum = 0, 0.0, torch.zeros((), device=device)
        if within is not None and epoch == start_epoch:  # a mid-epoch checkpoint's epoch
            done, before_s = resumed_at, float(within["epoch_s"])
            loss_sum += torch.as_tensor(within["loss_sum"], device=device)
        t0 = time.perf_counter()
        lr = cfg.optim.lr
        synced = done  # batches of this epoch already checked finite
        for i, batch in enumerate(loader, start=done):
            step = epoch * steps_per_epoch + i
            lr = cfg.optim.lr * lr_factor(step, steps_per_epoch, epochs, cfg.schedule)
            loss_sum += parts.step(batch, lr)
            sync_now = (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch
            save_now = (
                every is not None and every > 0 and (i + 1) % every == 0 and i + 1 < steps_per_epoch
            )
            if sync_now or save_now:  # a diverged model is never checkpointed: checked first
                mean_loss = launch.mean_over_ranks(loss_sum, shard).item() / (i + 1)
                _check_finite(
                    mean_loss, epoch, (step - i + synced + 1, step + 1), run, cfg.optim.lr
                )
                synced = i + 1
            if sync_now:
                progress.update(i + 1 - done - progress.epoch_steps, epoch, epochs, mean_loss)
            if save_now:
                elapsed = before_s + time.perf_counter() - t0
                within_now = {
                    "batch": i + 1,
                    "loss_sum": loss_sum.detach().cpu(),
                    "epoch_s": elapsed,
                }
                run.save_checkpoint({**parts.state_dict(), "rng": runtime.rng_state(),
                                     "epoch": epoch, "within": within_now,
                                     "history": history})  # fmt: skip
        train_s = before_s + time.perf_counter() - t0
        history["train_s"] += train_s
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * steps_per_epoch,
            "lr": lr,
            "train_loss": launch.mean_over_ranks(loss_sum, shard).item() / steps_per_epoch,
            "epoch_s": round(train_s, 3),
            "images_per_s": round(steps_per_epoch * cfg.train.batch_size / max(train_s, 1e-9), 1),
        }
        record.update(parts.step.epoch_record())  # the curriculum's alpha, rwSAM's weights
        evaluate_now = (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == epochs
        if evaluate_now and shard.main:  # rank 0 alone, on the whole test set (module docstring)
            summary = evaluate_model(model, data, cfg, device)
            record.update({named + k: summary[k] for k in GROUP_KEYS})
            if history.get(best) is None or summary["top1"] > history[best]:
                history[best], history["best_epoch"] = summary["top1"], epoch + 1
        history["wall_s"] = wall_before + time.perf_counter() - t_start
        record["wall_s"] = round(history["wall_s"], 2)
        run.append_metrics(record)
        board.log(record)
        progress.end_epoch(record, epochs)
        checkpoint = {
            **parts.state_dict(),
            "rng": runtime.rng_state(),
            "epoch": epoch + 1,
            "history": history,
        }
        run.save_checkpoint(checkpoint)
    progress.close()
    board.close()
    if not shard.main:
        return {}
    if not summary:  # a resumed run whose epochs were all done: evaluate the checkpoint
        summary = evaluate_model(model, data, cfg, device)
    cut = shortened(cfg)  # the recipe's protocol cut short: said in final.json and every title
    trained = epochs * steps_per_epoch * cfg.train.batch_size  # sizes a shortened run's probe
    length = f"{epochs} epochs" + (", shortened" if cut else "")
    plot_per_class_accuracy(
        summary["per_class"],
        data.train_counts,
        run.file(PLOT),
        title=f"{cfg.name}: {'kNN ' if named else ''}top-1 {summary['top1']:.2f}% after {length}",
        class_names=data.classes,
        many_threshold=cfg.eval.many_threshold,
        few_threshold=cfg.eval.few_threshold,
    )
    probes = (
        probe_run(model, data, cfg, device, run.file(PROBE_PLOT), length, trained)
        if cfg.probe.enabled
        else {}
    )
    return {
        **monitor_names(summary, named),
        **probes,
        "classes": data.classes,
        "epochs": epochs,
        "shortened": cut,  # why this is not the recipe's full protocol; [] when it is
        best: history.get(best),  # reported for comparison only, never used to choose
        "best_epoch": history.get("best_epoch"),
        "train_s": round(history["train_s"], 2),
        "wall_s": round(wall_before + time.perf_counter() - t_start, 2),
        "device": runtime.device_name(device),
        "precision": cfg.train.precision,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": runtime.git_commit(),
        "paper_top1": cfg.paper.top1,
        "paper_source": cfg.paper.source,
        "name": cfg.name,
        "method": cfg.method,
    }


def _check_finite(
    loss: float, epoch: int, steps: tuple[int, int], run: RunFolder, lr: float
) -> None:
    """Stop on a NaN/inf loss, naming the epoch and the steps since the last sync (1-based, of the
    whole run), and the resume that continues from the last good checkpoint at a lower rate. The
    loss is averaged over ranks, so every rank stops alike."""
    if math.isfinite(loss):
        return
    where = f"epoch {epoch + 1}, steps {steps[0]}-{steps[1]}"
    if run.file(CHECKPOINT).exists():
        then = f"longtail train resume={run.path} optim.lr={lr / 10:g}"
        fix = f"resume from the last good checkpoint at a lower rate:  {then}"
    else:
        fix = f"no checkpoint was written yet ({run.path}): start anew with a lower optim.lr"
    raise LongtailError(f"training loss became {loss} in {where}: {fix}", every_rank=True)

"""Supervised training with cross-entropy: the shared epoch loop, checkpoints, evaluation, run folder."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longtail.config import Config, from_dict, to_yaml
from longtail.data.augment import AugmentSpec, BatchAugment, normalize
from longtail.data.loader import DeviceLoader
from longtail.data.samplers import IndexSampler
from longtail.errors import LongtailError
from longtail.eval.plots import plot_per_class_accuracy
from longtail.eval.predict import evaluate
from longtail.io import atomic_torch_save, atomic_write_json
from longtail.losses import class_balanced_weights
from longtail.models.registry import create_model
from longtail.optim.param_groups import param_groups
from longtail.optim.schedules import lr_factor
from longtail.train import runtime
from longtail.train.data_setup import PreparedData, prepare_data
from longtail.train.progress import Progress
from longtail.train.run_folder import CHECKPOINT, INDEX, PLOT, RunFolder
from longtail.train.step import CrossEntropyStep

SYNC_EVERY = 25  # steps between host syncs (loss readout, NaN check, progress bar)


def augment_spec(cfg: Config) -> AugmentSpec:
    a = cfg.augment
    return AugmentSpec(
        crop=a.crop,
        padding=a.padding,
        pad_mode=a.pad_mode,
        resized_scale=(a.resized_scale[0], a.resized_scale[1]),
        flip=a.flip,
        jitter=(a.jitter[0], a.jitter[1], a.jitter[2], a.jitter[3]),
        jitter_p=a.jitter_p,
        grayscale_p=a.grayscale_p,
    )


def build_model(cfg: Config, data: PreparedData, device: torch.device) -> nn.Module:
    model = create_model(
        cfg.model.name,
        num_classes=data.num_classes,
        in_chans=data.in_chans,
        classifier=cfg.model.classifier,
        **cfg.model.kwargs,
    )
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def loss_weights(cfg: Config, counts: list[int], epoch: int, device: torch.device) -> Any:
    """Class weights active at ``epoch`` (None before ``loss.reweight_epoch``: DRW, Cao et al.)."""
    if cfg.loss.reweight == "none" or epoch < cfg.loss.reweight_epoch:
        return None
    return class_balanced_weights(counts, cfg.loss.beta).to(device)


def _open_run(cfg: Config) -> tuple[Config, RunFolder, dict[str, Any] | None]:
    """A new run folder, or the one named by ``resume`` with its saved config and checkpoint."""
    if cfg.resume is None:
        return cfg, RunFolder.create(cfg.out_dir, cfg.name), None
    run = RunFolder.open(cfg.resume)
    import yaml

    saved = from_dict(
        yaml.safe_load(run.file("config.yaml").read_text()), f"{run.path}/config.yaml"
    )
    # The saved config defines the run; only its length and how it is shown may change on resume.
    saved = replace(
        saved,
        resume=str(run.path),
        train=replace(saved.train, epochs=cfg.train.epochs, progress=cfg.train.progress),
    )
    ckpt_path = run.file(CHECKPOINT)
    if not ckpt_path.is_file():
        raise LongtailError(
            f"{run.path} has no {CHECKPOINT} (it stopped before its first epoch ended): start anew"
        )
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # a torn or foreign file
        raise LongtailError(f"cannot read {ckpt_path} ({type(err).__name__}): start anew") from None
    return saved, run, state


def train(cfg: Config) -> Path:
    """Train as configured; return the run folder. Raises LongtailError on bad input or NaN loss."""
    runtime.set_threads(cfg.train.threads)
    device = runtime.resolve_device(cfg.train.device)
    # Data first: bad data stops the run before any folder exists.
    data = prepare_data(cfg.data, device)
    cfg, run, state = _open_run(cfg)
    if state is None:
        run.write_config(to_yaml(cfg))
        atomic_write_json(run.file(INDEX), data.index_record)
    run.write_status("running")
    try:
        final = _fit(cfg, data, device, run, state)
    except BaseException as err:
        run.write_status("failed", error=f"{type(err).__name__}: {err}")
        raise
    run.write_final(final)
    run.write_status("complete")
    return run.path


@dataclass
class TrainingParts:
    """What one supervised run is made of: built the same way by the trainer and the benchmarks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: DeviceLoader
    step: CrossEntropyStep


def build_training(cfg: Config, data: PreparedData, device: torch.device) -> TrainingParts:
    """Model, SGD, device loader (sampler and augmentation with their own seeded generators), step."""
    runtime.seed_everything(cfg.train.seed)
    model = build_model(cfg, data, device)
    optimizer = torch.optim.SGD(
        param_groups(model, cfg.optim.weight_decay, cfg.optim.no_decay_1d),
        lr=cfg.optim.lr,
        momentum=cfg.optim.momentum,
        nesterov=cfg.optim.nesterov,
    )
    sampler = IndexSampler(
        data.train_labels,
        data.num_classes,
        cfg.train.batch_size,
        mode=cfg.train.sampler,  # type: ignore[arg-type]
        drop_last=True,
        generator=torch.Generator(device=device).manual_seed(cfg.train.seed),
    )
    aug_generator = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
    aug = BatchAugment(augment_spec(cfg), data.mean, data.std, generator=aug_generator)
    loader = DeviceLoader(data.train_images, data.train_labels, sampler, [aug])
    if len(loader) == 0:
        raise LongtailError(
            f"train.batch_size={cfg.train.batch_size} exceeds the {len(data.train_labels)} training"
            " images: lower the batch size"
        )
    amp = runtime.autocast_dtype(cfg.train, device)
    step = CrossEntropyStep(
        model, optimizer, device, amp, cfg.train.channels_last, cfg.train.compile
    )
    return TrainingParts(model, optimizer, loader, step)


def _fit(
    cfg: Config,
    data: PreparedData,
    device: torch.device,
    run: RunFolder,
    state: dict[str, Any] | None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    parts = build_training(cfg, data, device)
    model, optimizer, loader, step_fn = parts.model, parts.optimizer, parts.loader, parts.step
    steps_per_epoch = min(len(loader), cfg.train.max_steps_per_epoch or len(loader))
    start_epoch, history = 0, {"train_s": 0.0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        loader.load_state_dict(state["loader"])
        runtime.load_rng_state(state["rng"])
        start_epoch, history = state["epoch"], state["history"]
        run.truncate_metrics(start_epoch)
    wall_before = history.get("wall_s", 0.0)
    epochs = cfg.train.epochs
    progress = Progress(
        total=(epochs - start_epoch) * steps_per_epoch,
        batch_size=cfg.train.batch_size,
        enabled=cfg.train.progress,
    )
    summary: dict[str, Any] = {}
    for epoch in range(start_epoch, epochs):
        weights = loss_weights(cfg, data.train_counts, epoch, device)
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        seen = 0
        for i, (x, y) in enumerate(loader):
            assert isinstance(x, torch.Tensor)  # one view
            if i >= steps_per_epoch:
                break
            step = epoch * steps_per_epoch + i
            lr = cfg.optim.lr * lr_factor(step, steps_per_epoch, epochs, cfg.schedule)
            loss_sum += step_fn(x, y, lr, weights)
            seen += 1
            if seen % SYNC_EVERY == 0 or seen == steps_per_epoch:
                mean_loss = loss_sum.item() / seen
                _check_finite(mean_loss, epoch, run)
                progress.update(seen - progress.epoch_steps, epoch, epochs, mean_loss)
        train_s = time.perf_counter() - t0
        history["train_s"] += train_s
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": (epoch + 1) * steps_per_epoch,
            "lr": lr,
            "train_loss": loss_sum.item() / max(seen, 1),
            "epoch_s": round(train_s, 3),
            "images_per_s": round(seen * cfg.train.batch_size / max(train_s, 1e-9), 1),
        }
        if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == epochs:
            summary = evaluate_model(model, data, cfg, device)
            record.update({k: summary[k] for k in ("top1", "mean_class_acc", "many", "medium")})
            record.update({k: summary[k] for k in ("few", "head", "middle", "tail")})
            best = history.get("best_top1")
            if best is None or summary["top1"] > best:
                history["best_top1"], history["best_epoch"] = summary["top1"], epoch + 1
        history["wall_s"] = wall_before + time.perf_counter() - t_start
        record["wall_s"] = round(history["wall_s"], 2)
        run.append_metrics(record)
        progress.end_epoch(record)
        atomic_torch_save(
            run.file(CHECKPOINT),
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "loader": loader.state_dict(),
                "rng": runtime.rng_state(),
                "epoch": epoch + 1,
                "history": history,
            },
        )
    progress.close()
    if not summary:  # resumed a run whose epochs were all done: evaluate the checkpoint
        summary = evaluate_model(model, data, cfg, device)
    plot_per_class_accuracy(
        summary["per_class"],
        data.train_counts,
        run.file(PLOT),
        title=f"{cfg.name}: top-1 {summary['top1']:.2f}%",
        class_names=data.classes,
    )
    return {
        **summary,
        "classes": data.classes,
        "epochs": epochs,
        "best_top1": history.get("best_top1"),  # reported for comparison only, never used to choose
        "best_epoch": history.get("best_epoch"),
        "train_s": round(history["train_s"], 2),
        "wall_s": round(wall_before + time.perf_counter() - t_start, 2),
        "device": runtime.device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": runtime.git_commit(),
        "paper_top1": cfg.paper.top1,
        "paper_source": cfg.paper.source,
        "name": cfg.name,
    }


def evaluate_model(
    model: nn.Module, data: PreparedData, cfg: Config, device: torch.device
) -> dict[str, Any]:
    """Top-1, per-class and group accuracies of ``model`` on the prepared test split."""
    amp = runtime.autocast_dtype(cfg.train, device)
    channels_last = cfg.train.channels_last

    def transform(x: torch.Tensor) -> torch.Tensor:
        x = normalize(x, data.mean, data.std)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    return evaluate(
        model,
        data.test_images,
        data.test_labels,
        num_classes=data.num_classes,
        train_counts=data.train_counts,
        batch_size=cfg.eval.batch_size,
        transform=transform,
        autocast_dtype=amp,
    )


def _check_finite(loss: float, epoch: int, run: RunFolder) -> None:
    if not math.isfinite(loss):
        raise LongtailError(
            f"training loss became {loss} in epoch {epoch + 1}: lower optim.lr (the last good"
            f" checkpoint is kept in {run.path})"
        )

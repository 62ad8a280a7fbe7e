"""Building a supervised run's parts from its config: model, optimiser, loader, step, evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from longtail import runtime
from longtail.config import Config
from longtail.data.augment import AugmentSpec, BatchAugment
from longtail.data.loader import DeviceLoader
from longtail.data.prepared import PreparedData, input_transform
from longtail.data.samplers import IndexSampler
from longtail.data.seeds import purpose_seed
from longtail.data.stream import CropSpec, FileImages, StreamLoader
from longtail.errors import LongtailError
from longtail.eval.config import EvalConfig
from longtail.eval.predict import evaluate
from longtail.launch import Shard
from longtail.losses import logit_adjust_posthoc
from longtail.losses.objective import Objective
from longtail.losses.schedules import drs_mode, progressive_fraction
from longtail.models.pretrained import load_pretrained
from longtail.models.registry import create_model
from longtail.models.sync_bn import convert_sync_batchnorm
from longtail.optim.optimizers import build_optimizer
from longtail.optim.stepper import Stepper
from longtail.run_sections import TrainConfig
from longtail.strategies.base import MethodParts, View
from longtail.strategies.decoupling import TauNormalized, initialize, wrap_for_stage
from longtail.strategies.registry import get_method, trains_classifier
from longtail.train.probe_run import knn_summary


def build_model(
    cfg: Config, data: PreparedData, device: torch.device, pretrained: bool = False
) -> nn.Module:
    """The configured network on ``device``; with ``pretrained``, started from
    ``model.pretrained`` (training does; a checkpoint's reader does not need the file)."""
    return build_network(cfg, data.num_classes, data.in_chans, device, pretrained)


def build_network(
    cfg: Config, num_classes: int, in_chans: int, device: torch.device, pretrained: bool = False
) -> nn.Module:
    """:func:`build_model` from the class and channel counts alone (``longtail predict``)."""
    model: nn.Module = create_model(
        cfg.model.name,
        num_classes=num_classes,
        in_chans=in_chans,
        classifier=cfg.model.classifier,
        **cfg.model.kwargs,
    )
    if pretrained and cfg.model.pretrained:
        load_pretrained(model, cfg.model.pretrained)
    wrap_for_stage(model, cfg.init)  # type: ignore[arg-type]
    model = get_method(cfg.strategy.name).network(model, cfg.strategy, num_classes)
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


@dataclass
class TrainingParts:
    """What one supervised run is made of: built the same way by the trainer and the benchmarks."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any  # DeviceLoader, StreamLoader, or a method's composition of them
    objective: Objective
    step: Stepper
    frozen: dict[str, torch.Tensor] | None = None  # init.freeze: the state the stage must keep
    shard: Shard = field(default_factory=Shard)  # this process's rank among W (torchrun)

    def start_epoch(self, train: TrainConfig, epoch: int, device: torch.device) -> None:
        """Per-epoch switches: DRW class weights, DRS sampling, progressive sampling's t/T."""
        self.objective.set_epoch(epoch, device)
        self.step.set_epoch(epoch, train.epochs)
        sampler = self.loader.sampler
        if train.resample_epoch is not None:
            sampler.set_mode(drs_mode(epoch, train.resample_epoch))
        if train.sampler == "progressive":
            sampler.set_progress(progressive_fraction(epoch, train.epochs))

    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loader": self.loader.state_dict(),
        }
        step = self.step.state_dict()
        if step is not None:  # KCL's k-positive draw, rwSAM's weights
            state["step"] = step
        return state

    def load_state_dict(self, state: dict[str, Any], source: str) -> None:
        """Restore from a checkpoint; a checkpoint of another model or run is one line."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.loader.load_state_dict(state["loader"])
            if self.step.stateful:
                self.step.load_state_dict(state["step"])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LongtailError(f"{source} does not fit this run ({first}): start anew") from None


def check_parallel(train: TrainConfig, shard: Shard) -> None:
    """One line when this run's ``train.batch_size`` cannot be split over ``shard.world`` ranks."""
    if shard.world == 1:
        return
    if train.batch_size % shard.world:
        raise LongtailError(
            f"train.batch_size={train.batch_size} does not split over {shard.world} processes:"
            f" use a multiple of {shard.world} (it is the global batch)"
        )


def data_parallel(method: nn.Module, device: torch.device, static: bool = True) -> nn.Module:
    """``method`` in DistributedDataParallel: its backward averages the gradients over ranks.

    Buffers are not broadcast (global BatchNorm keeps them equal on every rank; without it each
    rank keeps its own and rank 0's are saved). Parameters a method never uses (a stage-1
    classifier) are allowed: by a static graph (one synchronised backward per forward, every
    step alike), or, when ``static`` is False because some backward passes skip synchronisation
    (``no_sync``, which a static graph's reducer refuses), by searching the graph for them.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # torch 2.13 renames broadcast_buffers (2.11, the GPU image, knows only the old name)
    known = inspect.signature(DistributedDataParallel.__init__).parameters
    buffers = "forward_sync_buffers" if "forward_sync_buffers" in known else "broadcast_buffers"
    options: dict[str, Any] = {buffers: False}
    options |= {"static_graph": True} if static else {"find_unused_parameters": True}
    return DistributedDataParallel(method, device_ids=ids, **options)


def stream_loader(
    augment: AugmentSpec,
    files: FileImages,
    labels: torch.Tensor,
    sampler: IndexSampler,
    views: list[tuple[AugmentSpec, int]],
    data: PreparedData,
    device: torch.device,
    seed: int,
    with_indices: bool,
    shard: Shard | None,
) -> StreamLoader:
    """The streaming loader of a view list: RandomResizedCrop and flip in the workers (the
    recipe's augment.resized_scale; ratio 3/4..4/3), colour jitter and grayscale on the device.
    ``augment`` (the run's ``augment.*``) must say ``crop=resized``; the crop's scale, ratio and
    flip are the first view's."""
    if augment.crop != "resized":
        raise LongtailError(
            f"a streamed run crops with RandomResizedCrop, not augment.crop={augment.crop}:"
            " set augment.crop=resized (and augment.resized_scale, [0.08, 1.0] for ImageNet)"
        )
    first = views[0][0]
    crop = CropSpec(size=files.crop, scale=(first.resized_scale[0], first.resized_scale[1]),
                    ratio=(first.resized_ratio[0], first.resized_ratio[1]),
                    flip=first.flip)  # fmt: skip
    augments = [
        BatchAugment(replace(spec, crop="none", flip=False), data.mean, data.std,
                     torch.Generator(device=device).manual_seed(s))
        for spec, s in views
    ]  # fmt: skip
    return StreamLoader(files.paths, labels, sampler, augments, crop, device=device,
                        seed=seed, channels=files.channels, workers=files.workers,
                        with_indices=with_indices, shard=shard)  # fmt: skip


def build_training(
    cfg: Config, data: PreparedData, device: torch.device, shard: Shard | None = None
) -> TrainingParts:
    """Model, optimiser, device loader (sampler and augmentation with their own seeded generators), step.

    With a ``shard`` of W > 1 ranks (torchrun): BatchNorm over the global batch
    (``train.sync_bn``), loaders that cut this rank's rows from the global batch, and the method
    wrapped in DistributedDataParallel, so that W ranks take the steps one process would.
    """
    shard = shard or Shard()
    check_parallel(cfg.train, shard)
    runtime.seed_everything(cfg.train.seed)
    model = build_model(cfg, data, device, pretrained=True)
    # init.run: source weights, classifier reset, freezing
    frozen = initialize(model, cfg.init, cfg.model, cfg.data)
    if cfg.train.sync_bn:  # a no-op in one process
        model = convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(model, cfg.optim)

    # a streamed run samples on the host
    where = torch.device("cpu") if isinstance(data.train_images, FileImages) else device
    labels = data.train_labels.to(where)

    def make_loader(
        mode: str,
        views: list[View],
        *,
        sampler: str = "sampler",
        cut: bool = True,
        with_indices: bool = False,
    ) -> DeviceLoader | StreamLoader:
        """Batches of ``mode``-sampled indices, one augmented view per (spec, seed purpose)."""
        index_sampler = IndexSampler(
            labels,
            data.num_classes,
            cfg.train.batch_size,
            mode=mode,  # type: ignore[arg-type]
            drop_last=True,
            generator=torch.Generator(device=where).manual_seed(seed(sampler)),
            max_batches=cfg.train.max_steps_per_epoch if cut else None,
        )
        seeded = [(spec, seed(purpose)) for spec, purpose in views]
        if isinstance(data.train_images, FileImages):
            return stream_loader(cfg.augment, data.train_images, labels, index_sampler, seeded,
                                 data, device, seed(sampler), with_indices, shard)  # fmt: skip
        augments = [
            BatchAugment(spec, data.mean, data.std, torch.Generator(device=device).manual_seed(s))
            for spec, s in seeded
        ]
        return DeviceLoader(data.train_images, labels, index_sampler, augments, with_indices, shard)

    def seed(purpose: str) -> int:
        return purpose_seed(cfg.train.seed, purpose)

    objective = Objective(cfg.loss, data.train_counts).to(device)
    parts = MethodParts(
        net=model,
        data=data,
        device=device,
        augment=cfg.augment,
        loader=make_loader,
        objective=objective,
        seed=seed,
        train=cfg.train,
        sam=cfg.sam,
        eval=cfg.eval,
        transform=input_transform(cfg.train.channels_last, data, device),
    )
    loader, method = get_method(cfg.strategy.name).build(parts, cfg.strategy)
    if len(loader) == 0:
        raise LongtailError(
            f"train.batch_size={cfg.train.batch_size} exceeds the {len(data.train_labels)} training"
            " images: lower the batch size"
        )
    amp = runtime.autocast_dtype(cfg.train, device)
    skips_sync = cfg.sam.rho > 0 and not cfg.sam.sync_first  # SAM's first pass under no_sync
    step = Stepper(
        method,
        optimizer,
        device,
        amp,
        cfg.train.channels_last,
        sam=cfg.sam,
        # under a process group (torchrun, even of one process): DDP around the method
        forward_module=(
            data_parallel(method, device, static=not skips_sync) if dist.is_initialized() else None
        ),
        sam_sync_first=cfg.sam.sync_first,
    )
    return TrainingParts(model, optimizer, loader, objective, step, frozen, shard)


def evaluate_model(
    model: nn.Module, data: PreparedData, cfg: Config, device: torch.device
) -> dict[str, Any]:
    """Top-1, per-class and group accuracies of ``model`` on the prepared test split.

    A representation-learning run (SSL, SupCon, KCL stage 1) never trains its classifier, so it is
    evaluated by a kNN classifier on its frozen features instead (:func:`knn_summary`).
    """
    if not trains_classifier(cfg.strategy.name):
        return knn_summary(model, data, cfg, device)
    transform = input_transform(cfg.train.channels_last, data, device)
    return evaluate(
        evaluation_model(model, cfg.eval, data.train_counts),
        data.test_images,
        data.test_labels,
        num_classes=data.num_classes,
        train_counts=data.train_counts,
        batch_size=cfg.eval.batch_size,
        transform=transform,
        autocast_dtype=runtime.autocast_dtype(cfg.train, device),
        many_threshold=cfg.eval.many_threshold,
        few_threshold=cfg.eval.few_threshold,
    )


def evaluation_model(model: nn.Module, eval: EvalConfig, train_counts: list[int]) -> nn.Module:
    """``model`` as the run evaluates it: tau-normalised (``eval.tau_norm``) and/or logit-adjusted
    by the training prior (``eval.posthoc_tau``) when ``eval`` asks."""
    if eval.tau_norm is not None:
        model = TauNormalized(model, eval.tau_norm)
    if eval.posthoc_tau is not None:
        model = PosthocAdjusted(model, train_counts, eval.posthoc_tau)
    return model


class PosthocAdjusted(nn.Module):
    """Evaluation-time logit adjustment (Menon et al. 2021): logits - tau * log(prior)."""

    def __init__(self, model: nn.Module, class_counts: list[int], tau: float) -> None:
        super().__init__()
        self.model = model
        # the correction of zero logits: logit_adjust_posthoc(z) = z + this, computed once so the
        # forward holds no data-dependent check (torch.export traces it; deploy/export.py)
        where = next(model.parameters()).device
        zero = torch.zeros(1, len(class_counts), device=where)
        self.register_buffer("offset", logit_adjust_posthoc(zero, class_counts, tau)[0])

    offset: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        return logits.to(torch.promote_types(logits.dtype, torch.float32)) + self.offset

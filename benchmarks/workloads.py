"""The speed benchmark's workloads: what one training step does, shared by both input pipelines.

CIFAR-10-LT r=100, ResNet-32 (option-A shortcuts, 0.46M parameters), 200 epochs:

* ``ce``: the baseline recipe, batch 128, one pad-crop + flip view, cross-entropy
  (:class:`~longtail.strategies.supervised.Supervised` with plain CE through the trainer's
  :class:`~longtail.optim.stepper.Stepper`).
* ``hybrid``: a Hybrid-SC style step (Wang et al. CVPR 2021), batch 256: two contrastive views of a
  shuffled batch plus one pad-crop + flip view of a class-balanced batch, all 768 images in one
  backbone forward; SupCon (tau = 0.1, Khosla et al. 2020 eq. 2) on the 128-d projection
  (ProjectionHead 64 -> 512 -> 128) of the contrastive views, cross-entropy on the linear
  classifier for the balanced view, loss = alpha * SupCon + (1 - alpha) * CE with alpha = 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.data.augment import AugmentSpec
from longtail.models.registry import create_model
from longtail.optim.param_groups import param_groups
from longtail.optim.stepper import Stepper
from longtail.strategies.hybrid import Hybrid, HybridConfig, HybridNet
from longtail.strategies.supervised import Supervised

# The learning rate of LDAM-DRW's first warm-up epoch: large enough to be a real step, small
# enough that a few steps from a random init stay finite. It does not change the time of a step.
LR = 0.02
MOMENTUM = 0.9
WEIGHT_DECAY = 2e-4
MODEL = "resnet32"

PAD_FLIP = AugmentSpec(crop="pad", padding=4, flip=True)
CONTRASTIVE_JITTER = AugmentSpec(
    crop="pad", padding=4, flip=True, jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, grayscale_p=0.2
)
CONTRASTIVE_PLAIN = AugmentSpec(crop="pad", padding=4, flip=True, grayscale_p=0.2)


@dataclass(frozen=True)
class Workload:
    """One step's shape: the contrastive views (none for CE) and the cross-entropy view."""

    name: str
    batch_size: int
    contrastive_views: tuple[AugmentSpec, ...]
    ce_view: AugmentSpec
    ce_sampler: str  # "random" or "class_balanced"
    alpha: float = 0.5
    temperature: float = 0.1
    projection: tuple[int, int] = (512, 128)  # hidden, output widths of the projection head

    @property
    def images_per_step(self) -> int:
        """Images through the backbone per step: B x (contrastive views + 1)."""
        return self.batch_size * (len(self.contrastive_views) + 1)

    def resized(self, batch_size: int) -> Workload:
        """The same workload at another batch size (smoke tests on tiny data)."""
        return Workload(
            self.name,
            batch_size,
            self.contrastive_views,
            self.ce_view,
            self.ce_sampler,
            self.alpha,
            self.temperature,
            self.projection,
        )


WORKLOADS: dict[str, Workload] = {
    "ce": Workload("ce", 128, (), PAD_FLIP, "random"),
    "hybrid": Workload(
        "hybrid", 256, (CONTRASTIVE_JITTER, CONTRASTIVE_PLAIN), PAD_FLIP, "class_balanced"
    ),
}


@dataclass
class StepInput:
    """One step's device tensors. views: V x float [B, C, H, W] contrastive views of the images
    labelled ``labels`` [B] (V = 0 for CE); ce_view: float [B, C, H, W] labelled ce_labels [B]."""

    views: list[Tensor]
    labels: Tensor
    ce_view: Tensor
    ce_labels: Tensor


def build_step(
    workload: Workload,
    num_classes: int,
    device: torch.device,
    amp: torch.dtype | None,
    compile: bool,
    seed: int = 0,
) -> Callable[[StepInput], Tensor]:
    """A fresh seeded model (channels-last), SGD and the workload's step: StepInput -> loss []."""
    torch.manual_seed(seed)
    backbone = create_model(MODEL, num_classes=num_classes)
    model: nn.Module = backbone
    hidden, out = workload.projection
    strategy = HybridConfig(  # the trainer's own Hybrid step, alpha fixed for the benchmark
        contrastive="supcon",
        temperature=workload.temperature,
        proj_hidden=hidden,
        proj_dim=out,
        curriculum="fixed",
        fixed_alpha=workload.alpha,
        batch_norm="joint",
    )
    if workload.contrastive_views:
        model = HybridNet(backbone, strategy, num_classes)
    model = model.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(
        param_groups(model, WEIGHT_DECAY, no_decay_1d=False), lr=LR, momentum=MOMENTUM
    )
    model.train()
    if isinstance(model, HybridNet):
        method = Hybrid(model, nn.CrossEntropyLoss(), strategy, compile)
        hybrid = Stepper(method, optimizer, device, amp, channels_last=True)
        hybrid.set_epoch(0, 1)  # curriculum "fixed": alpha = workload.alpha

        def hybrid_step(batch: StepInput) -> Tensor:
            return hybrid((batch.views, batch.labels, batch.ce_view, batch.ce_labels), LR)

        return hybrid_step
    ce = Stepper(Supervised(model, F.cross_entropy, compile), optimizer, device, amp, True)
    return lambda batch: ce((batch.ce_view, batch.ce_labels), LR)


def split_workers(workload: Workload, workers: int) -> tuple[int, int]:
    """(contrastive loader, CE loader) workers out of ``workers`` in all.

    The contrastive loader transforms V images per item, the CE loader one, so it gets about
    V / (V + 1) of the workers; each keeps at least one when there are two or more.
    """
    views = len(workload.contrastive_views)
    if views == 0:
        return 0, workers
    if workers < 2:
        return workers, 0
    contrastive = round(workers * views / (views + 1))
    contrastive = min(workers - 1, max(1, contrastive))
    return contrastive, workers - contrastive

"""The run-wide config sections: train.*, log.*, paper.* (what no component owns).

Like every section class, each declares its allowed values (``choices``) and checks its own
rules (``check``); :mod:`longtail.config` assembles them with the components' sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from longtail.errors import LongtailError


@dataclass
class TrainConfig:
    """How the run trains: epochs, batches, sampling, seed, device, precision, checkpoints."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "sampler": ("random", "class_balanced", "sqrt", "progressive"),
        "precision": ("auto", "fp32", "bf16"),
    }

    epochs: int = 200
    batch_size: int = 128
    sampler: str = "random"  # random | class_balanced | sqrt | progressive (Kang et al. 2020)
    resample_epoch: int | None = None  # DRS: class-balanced sampling from this epoch (0-based)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = (
        "auto"  # auto (bf16 on GPU and on CPUs with native bf16, else fp32) | fp32 | bf16
    )
    channels_last: bool = True  # NHWC activations: faster on GPU, and on CPU (ResNet-20: +35%)
    compile: bool = False
    threads: int = 0  # CPU threads; 0 = torch's default (all cores, or OMP_NUM_THREADS)
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke tests)
    # also checkpoint every N steps inside an epoch (large-scale epochs are long); a resume from
    # such a checkpoint continues at the next batch exactly. null: at epoch ends only
    checkpoint_every_steps: int | None = None
    progress: bool = True
    sync_bn: bool = True  # under torchrun (W > 1): BatchNorm over the global batch, as one process

    def check(self) -> None:
        """The section's own rules (one-line errors)."""
        for key in ("epochs", "batch_size"):
            if not getattr(self, key) > 0:
                raise LongtailError(
                    f"train.{key} must be > 0 (got {getattr(self, key)}): fix the recipe or"
                    " override"
                )
        for key in ("max_steps_per_epoch", "checkpoint_every_steps"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise LongtailError(f"train.{key} must be >= 1 or null (got {value})")
        if self.threads < 0:
            raise LongtailError(f"train.threads must be >= 0 (got {self.threads}); 0 = default")
        if self.resample_epoch is not None and self.sampler != "random":
            raise LongtailError(
                "train.resample_epoch (DRS) switches random sampling to class-balanced: set"
                " train.sampler=random"
            )


@dataclass
class LogConfig:
    """Where a run's per-epoch numbers go besides metrics.jsonl."""

    tensorboard: bool = False  # TensorBoard scalars in <run>/tensorboard (pip install tensorboard)


@dataclass
class PaperConfig:
    """The published number a recipe reproduces, and where it was published."""

    top1: float | None = None
    source: str | None = None

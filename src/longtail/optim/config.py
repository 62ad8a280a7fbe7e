"""optim.*, schedule.*, sam.*: how a run steps (the optimiser, its learning rate, SAM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from longtail.errors import LongtailError, require


@dataclass
class OptimConfig:
    """The optimiser (longtail.optim.optimizers): sgd | adamw | lars (large-batch SSL)."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"name": ("sgd", "adamw", "lars")}

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # sgd and lars
    nesterov: bool = False  # sgd only
    weight_decay: float = 2e-4  # sgd / lars: L2 in the gradient; adamw: decoupled
    # no weight decay on biases and norm parameters (1-D tensors); under lars no adaptation either
    no_decay_1d: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    eps: float = 1.0e-8  # adamw
    lars_eta: float = 0.001  # lars: the trust coefficient (SimCLR)

    def check(self) -> None:
        if not self.lr > 0:
            raise LongtailError(f"optim.lr must be > 0 (got {self.lr}): fix the recipe or override")
        if self.weight_decay < 0 or self.momentum < 0:
            raise LongtailError(
                "optim.weight_decay and optim.momentum must be >= 0: fix the recipe"
            )
        if self.nesterov and self.name != "sgd":
            raise LongtailError(
                f"optim.nesterov applies to sgd, not optim.name={self.name}: drop it"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise LongtailError(
                f"optim.betas must be two values in [0, 1) (got {self.betas}): e.g. [0.9, 0.999]"
            )
        if not (self.eps > 0 and self.lars_eta > 0):
            raise LongtailError("optim.eps and optim.lars_eta must be > 0: e.g. 1e-8 and 0.001")


@dataclass
class ScheduleConfig:
    """Learning-rate factor per step: linear warm-up, then step decay or cosine."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"kind": ("step", "cosine", "constant")}

    kind: str = "step"  # step | cosine | constant
    warmup_epochs: float = 5.0
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = (
        0.01  # step: factor applied at each milestone (LDAM-DRW: x0.01 at 160, x1e-4 at 180)
    )
    min_lr_factor: float = 0.0  # cosine floor, as a fraction of optim.lr
    # train.epochs unlike the recipe's: milestones, warm-up, DRW/DRS epochs scale with it
    # (longtail.epoch_events); false keeps them as written
    scale_with_epochs: bool = True

    def check(self) -> None:
        if self.warmup_epochs < 0:
            raise LongtailError(f"schedule.warmup_epochs must be >= 0 (got {self.warmup_epochs})")
        if sorted(self.milestones) != list(self.milestones):
            raise LongtailError("schedule.milestones must be increasing epochs, e.g. [160, 180]")


@dataclass
class SamConfig:
    """Sharpness-aware minimisation (Foret et al. 2021), adaptive (Kwon et al. 2021), and rwSAM's
    re-weighted perturbation (Liu et al. 2022). ``rho = 0`` switches SAM off."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"weights": ("none", "kde", "label")}

    rho: float = (
        0.0  # perturbation radius; Imbalanced-SSL: 0.5 (KDE script), 7.0 (exp weights, ASAM)
    )
    adaptive: bool = False  # ASAM: perturbation scaled by |w| + eta
    eta: float = 0.0
    weights: str = "none"  # none (plain SAM) | kde (rwSAM, label-free) | label (oracle ablation)
    power: float = 1.0  # w_i ~ density_i^-power (kde) or n_{y_i}^-power (label)
    refresh_every: int = 5  # kde: weights re-estimated every N epochs; 1 until the first estimate
    bandwidth: float | None = None  # kde: Gaussian bandwidth on unit features; None: kNN median
    neighbors: int = 10  # kde: the bandwidth is the median distance to the N-th neighbour
    max_weight: float = 10.0  # kde: weights clipped at this multiple of their mean
    sync_first: bool = True  # under torchrun: synchronise the perturbation pass's gradients too

    def check(self) -> None:
        require(
            ("sam.rho", self.rho, self.rho >= 0, ">= 0 (0 turns SAM off)"),
            ("sam.eta", self.eta, self.eta >= 0, ">= 0"),
            ("sam.power", self.power, self.power >= 0, ">= 0"),
            ("sam.refresh_every", self.refresh_every, self.refresh_every >= 1, ">= 1"),
            ("sam.neighbors", self.neighbors, self.neighbors >= 1, ">= 1"),
            ("sam.max_weight", self.max_weight, self.max_weight >= 1, ">= 1"),
        )
        if self.rho == 0 and (self.weights != "none" or self.adaptive):
            raise LongtailError(
                f"sam.weights={self.weights} / sam.adaptive need a perturbation: set sam.rho > 0"
                " (e.g. 0.5)"
            )
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise LongtailError(f"sam.bandwidth must be > 0 or null (got {self.bandwidth})")

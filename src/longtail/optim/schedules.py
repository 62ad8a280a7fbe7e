"""Learning-rate schedules as a factor of the base rate, evaluated per optimiser step."""

from __future__ import annotations

import bisect
import math

from longtail.optim.config import ScheduleConfig


def lr_factor(step: int, steps_per_epoch: int, epochs: int, cfg: ScheduleConfig) -> float:
    """Factor multiplying the base learning rate at optimiser step ``step`` (0-based).

    Warm-up is linear per step over ``warmup_epochs`` (clipped to the run's length), reaching 1 at
    its end (LDAM-DRW warms up per epoch: lr * (epoch + 1) / 5; per step is the smooth version).
    ``step``: the factor is ``gamma ** k`` where k counts the milestones <= the current epoch, so with
    milestones [160, 180] and gamma 0.01, epochs 160-179 run at 1e-2 and 180+ at 1e-4 of the base.
    ``cosine``: half a cosine from 1 down to ``min_lr_factor`` over the epochs after warm-up.
    """
    epoch_float = step / steps_per_epoch
    warmup = min(cfg.warmup_epochs, epochs)
    if warmup > 0 and epoch_float < warmup:
        return min(1.0, (step + 1) / (warmup * steps_per_epoch))  # <= 1 below one step's warm-up
    if cfg.kind == "constant":
        return 1.0
    if cfg.kind == "step":
        return cfg.gamma ** bisect.bisect_right(cfg.milestones, int(epoch_float))
    span = max(epochs - warmup, 1e-12)
    progress = min(max((epoch_float - warmup) / span, 0.0), 1.0)
    return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))

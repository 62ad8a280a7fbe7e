"""Checks every config value gets before anything is built: finite numbers, seeds, momentum.

A NaN or infinite value (``optim.lr=.inf``, ``schedule.warmup_epochs=.nan``) passes a ``> 0``
check and fails an epoch later under another name; a seed outside NumPy's range fails deep inside
a generator with a traceback. Here each is one line naming the key, before the first step.
"""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from longtail.errors import LongtailError

SEED_LIMIT = 2**32  # numpy.random.RandomState / default_rng seeds: [0, 2^32)
SEEDS = (("train", "seed"), ("data", "subset_seed"))


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if is_dataclass(node):
        out: list[tuple[str, Any]] = []
        for f in fields(node):
            out += _leaves(getattr(node, f.name), f"{prefix}{f.name}.")
        return out
    return [(prefix.rstrip("."), node)]


def check_values(cfg: Any) -> None:
    """One-line errors for non-finite numbers, seeds out of range and momentum outside [0, 1)."""
    for key, value in _leaves(cfg):
        numbers = value if isinstance(value, list | tuple) else [value]
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                raise LongtailError(
                    f"{key}={v} must be a finite number: fix the recipe or override"
                )
    for section, name in SEEDS:
        seed = getattr(getattr(cfg, section), name)
        if not 0 <= seed < SEED_LIMIT:
            raise LongtailError(
                f"{section}.{name}={seed} must be in [0, 2^32) (NumPy's seed range): e.g. 0"
            )
    if not 0 <= cfg.optim.momentum < 1:
        raise LongtailError(
            f"optim.momentum={cfg.optim.momentum} must be in [0, 1) (1 never forgets a gradient):"
            " e.g. 0.9"
        )
    _check_ranges(cfg)


# (section, key, lowest allowed, strict, why): each a one-line error when out of range
RANGES: tuple[tuple[str, str, float, bool, str], ...] = (
    ("augment", "padding", 0, False, "pixels of padding"),
    ("strategy", "temperature", 0, True, "a softmax temperature"),
    ("strategy", "k", 1, False, "positives an anchor draws"),
    ("strategy", "queue_size", 0, False, "queued keys"),
)


def _check_ranges(cfg: Any) -> None:
    """Lower bounds of values that no method reads as a switch (any strategy may set them)."""
    for section, name, low, strict, what in RANGES:
        value = getattr(getattr(cfg, section), name, None)
        if value is None:
            continue
        if value < low or (strict and value == low):
            bound = f"> {low:g}" if strict else f">= {low:g}"
            raise LongtailError(f"{section}.{name}={value} must be {bound} ({what}): fix it")
    milestones = cfg.schedule.milestones or []
    if any(m < 0 for m in milestones):
        raise LongtailError(
            f"schedule.milestones={milestones} must be epochs >= 0: e.g. [160, 180]"
        )
    if cfg.eval.tau_norm is not None and cfg.eval.tau_norm < 0:
        raise LongtailError(f"eval.tau_norm={cfg.eval.tau_norm} must be >= 0 (Kang et al.: 0..2)")

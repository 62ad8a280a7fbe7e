"""A recipe's epoch-valued keys, scaled when a run trains for a different number of epochs.

LDAM-DRW's recipe switches DRW on at epoch 160 and decays the learning rate at 160 and 180 of 200.
Run it for 20 epochs with those values kept and it is LDAM without DRW and without decay: another
method under the same name. So when ``train.epochs`` differs from the recipe's, the keys below move
with it (``schedule.scale_with_epochs=false`` keeps them as written; a key set on the command line
is never scaled; a resume never rescales: it reads the run's resolved config):

* events, at whole epochs: ``schedule.milestones`` (with ``schedule.kind=step``, which alone reads
  them), ``loss.reweight_epoch``, ``train.resample_epoch``
  -- ``round(e * E / E_recipe)``; an event inside the recipe's run (0 < e < E_recipe) stays inside
  the scaled one (1 <= e' <= E - 1), so a 2-epoch LDAM-DRW still reaches DRW and both decays;
* intervals, in whole epochs >= 1: ``sam.refresh_every`` (rwSAM's KDE weight re-estimation);
* the warm-up length ``schedule.warmup_epochs``, a float key: scaled and kept to 0.01 epoch (a
  warm-up rounded to 0 whole epochs would be dropped; the schedule counts it in steps).

``eval.every`` is left alone: it changes what is measured, not what is learned.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

EVENTS = ("schedule.milestones", "loss.reweight_epoch", "train.resample_epoch")
INTERVALS = ("sam.refresh_every",)
LENGTHS = ("schedule.warmup_epochs",)
SCALED = (*EVENTS, *INTERVALS, *LENGTHS)


def _event(value: int, ratio: float, recipe_epochs: int, epochs: int) -> int:
    scaled = round(value * ratio)
    if 0 < value < recipe_epochs:  # it happened in the recipe's run: it happens in this one
        return min(max(scaled, 1), max(epochs - 1, 1))
    return scaled


def _scale(key: str, value: Any, recipe_epochs: int, epochs: int) -> Any:
    ratio = epochs / recipe_epochs
    if value is None:
        return None
    if key in EVENTS:
        if isinstance(value, list):
            return [_event(int(v), ratio, recipe_epochs, epochs) for v in value]
        return _event(int(value), ratio, recipe_epochs, epochs)
    if key in INTERVALS:
        return max(1, round(value * ratio))
    length = round(float(value) * ratio, 2)
    return max(length, 0.01) if value > 0 else 0.0  # a warm-up stays a warm-up


def _get(cfg: Any, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _set(cfg: Any, key: str, value: Any) -> Any:
    section, name = key.split(".")
    return replace(cfg, **{section: replace(getattr(cfg, section), **{name: value})})


def scale_to_epochs(cfg: Any, recipe: Any, given: set[str]) -> tuple[Any, list[str]]:
    """``cfg`` with its epoch-valued keys scaled from ``recipe``'s epochs to its own.

    cfg, recipe: :class:`longtail.config.Config` (the run's, and the recipe's without overrides);
    given: the keys set on the command line (kept as given). Returns (config, one ``"key a -> b"``
    per changed key); unchanged when the epochs agree or ``schedule.scale_with_epochs`` is false.
    """
    epochs, recipe_epochs = cfg.train.epochs, recipe.train.epochs
    if epochs == recipe_epochs or not cfg.schedule.scale_with_epochs:
        return cfg, []
    changes = []
    for key in SCALED:
        if any(g == key or g.startswith(key + ".") or key.startswith(g + ".") for g in given):
            continue  # set on the command line (the key, an element of it, or its section)
        if key == "sam.refresh_every" and cfg.sam.weights != "kde":
            continue  # only rwSAM's KDE weights are re-estimated
        if key == "schedule.milestones" and cfg.schedule.kind != "step":
            continue  # read by the step schedule alone
        before = _get(recipe, key)
        after = _scale(key, before, recipe_epochs, epochs)
        if after != before:
            cfg = _set(cfg, key, after)
            changes.append(f"{key} {before} -> {after}")
    return cfg, changes

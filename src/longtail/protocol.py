"""When a run is its recipe's full protocol, and when two runs are the same setting.

One definition, used by ``longtail report``, ``longtail queue merge`` and everything that decides
whether a run may enter a results table:

* **shortened** -- a run that did less than its recipe: fewer epochs, ``train.max_steps_per_epoch``,
  ``data.test_limit``, or a smaller probe (probe off, fewer images per class in the balanced or OOD
  probe set, no long-tailed or OOD probe, fewer L-BFGS iterations). A shortened run never enters a
  results file.
* **same setting** -- two configs that may share a results row (as seeds) or replace each other.
  What does not change the result is left out of the comparison: the seed, device, precision
  (``auto`` is bf16 on a GPU and fp32 on many CPUs: a numerics choice like the device), threads,
  progress, ``eval.every`` (the last epoch is always evaluated, and only it is reported), the run's
  name and folder, the decode cache, a ``pack`` of the recipe's own data in place of its source
  (``longtail pack`` encodes the same images), and a stage 2's ``init.run`` folder (with the subset
  file it implies: each seed starts from its own first stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longtail.config import Config, load_config, to_dict
from longtail.data.source import is_pack
from longtail.errors import LongtailError

# (section, key) pairs that do not change a run's result
NEUTRAL = (
    ("train", "seed"),
    ("train", "device"),
    ("train", "precision"),
    ("train", "threads"),
    ("train", "progress"),
    ("eval", "every"),
    ("data", "cache_dir"),
    ("log", "tensorboard"),  # where the numbers are logged, not what they are
    ("schedule", "scale_with_epochs"),  # read while loading: the schedule it gave is compared
    ("probe", "size"),  # sizes the probes of shortened runs only, which no table takes
)
_TOP_NEUTRAL = ("name", "out_dir")


def _fewer(run: int | None, recipe: int | None) -> bool:
    """A per-class cap (None = all) that keeps fewer images than the recipe's."""
    return run is not None and (recipe is None or run < recipe)


def shortened(cfg: Config, recipe: Config | None = None) -> list[str]:
    """Why ``cfg`` is not the full protocol of ``recipe`` (empty list: it is).

    ``recipe`` defaults to the config's own recipe file (``cfg.recipe``) read again; a config with
    no recipe, or whose recipe is gone, is checked for the cuts that need no reference.
    """
    if recipe is None and cfg.recipe and Path(cfg.recipe).is_file():
        recipe = load_config(cfg.recipe)
    reasons = []
    if cfg.train.max_steps_per_epoch is not None:
        reasons.append(f"train.max_steps_per_epoch={cfg.train.max_steps_per_epoch}")
    if cfg.data.test_limit is not None:
        reasons.append(f"data.test_limit={cfg.data.test_limit}")
    if recipe is None:
        return reasons
    if cfg.train.epochs < recipe.train.epochs:
        reasons.append(f"train.epochs={cfg.train.epochs} < the recipe's {recipe.train.epochs}")
    p, r = cfg.probe, recipe.probe
    if r.enabled and not p.enabled:
        reasons.append("probe.enabled=false (the recipe probes)")
    if r.enabled and p.enabled:
        if _fewer(p.balanced_per_class, r.balanced_per_class):
            reasons.append(f"probe.balanced_per_class={p.balanced_per_class} < the recipe's")
        if r.long_tailed and not p.long_tailed:
            reasons.append("probe.long_tailed=false (the recipe probes the long-tailed set)")
        if r.ood is not None and p.ood is None:
            reasons.append(f"no OOD probe (the recipe's probe.ood={r.ood})")
        if r.ood is not None and _fewer(p.ood_per_class, r.ood_per_class):
            reasons.append(f"probe.ood_per_class={p.ood_per_class} < the recipe's")
        if p.iterations < r.iterations:
            reasons.append(f"probe.iterations={p.iterations} < the recipe's {r.iterations}")
    return reasons


def full_protocol(cfg: Config) -> bool:
    return not shortened(cfg)


def setting(cfg: Config) -> dict[str, Any]:
    """The config tree that decides a run's result (the NEUTRAL keys removed)."""
    tree = to_dict(cfg)
    for section, key in NEUTRAL:
        tree[section].pop(key, None)
    for key in _TOP_NEUTRAL:
        tree.pop(key, None)
    tree["data"]["dataset"], tree["data"]["root"] = _source(cfg)
    if cfg.init.run is not None:  # a stage 2: each seed starts from its own first-stage folder
        tree["init"].pop("run")
        if cfg.data.index_file == str(Path(cfg.init.run) / "lt_index.json"):
            tree["data"].pop("index_file")  # derived from init.run (decoupling.source_index_file)
    return tree


def _source(cfg: Config) -> tuple[str, str]:
    """(dataset, root) a run's images come from: a pack (``longtail pack`` of the recipe's data)
    counts as the recipe's own dataset and root."""
    data = cfg.data
    if not is_pack(data) or not cfg.recipe or not Path(cfg.recipe).is_file():
        return data.dataset, data.root
    try:
        source = load_config(cfg.recipe).data
    except LongtailError:
        return data.dataset, data.root
    return source.dataset, source.root


def source_dataset(cfg: Config) -> str:
    """The dataset a run's images come from (a pack of the recipe's data counts as that data)."""
    return _source(cfg)[0]


def same_setting(a: Config, b: Config) -> bool:
    return setting(a) == setting(b)

"""Typed run configuration: the skeleton of sections, loading, overrides and validation.

Each section's dataclass lives with the component that reads it and owns its defaults, its
allowed values (``choices``) and its rules (``check``): ``data.*`` in :mod:`longtail.data.config`,
``augment.*`` in :mod:`longtail.data.augment_spec`, ``model.*`` in :mod:`longtail.models.config`,
``loss.*`` in :mod:`longtail.losses.config`, ``optim.*`` / ``schedule.*`` / ``sam.*`` in
:mod:`longtail.optim.config`, ``eval.*`` / ``probe.*`` in :mod:`longtail.eval.config`, and
``strategy.*`` in each method's module (``strategy.name`` picks the dataclass,
:mod:`longtail.strategies.registry`), ``init.*`` in :mod:`longtail.strategies.decoupling`. The
run-wide sections (train, log, paper) are in :mod:`longtail.run_sections`.

A recipe is a YAML file holding only what differs from the defaults; command-line overrides are
``key=value`` pairs with dotted keys (``optim.lr=0.05``). Both are merged onto the dataclasses
with OmegaConf, which rejects unknown keys and wrong types; :func:`validate` then checks the values.
Every problem becomes a one-line :class:`~longtail.errors.LongtailError`.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from longtail.data.augment_spec import AugmentSpec
from longtail.data.config import DataConfig
from longtail.errors import LongtailError
from longtail.eval.config import EvalConfig, ProbeConfig
from longtail.losses.config import LossConfig
from longtail.models.config import ModelConfig
from longtail.optim.config import OptimConfig, SamConfig, ScheduleConfig
from longtail.recipe_files import recipe_layers
from longtail.run_sections import LogConfig, PaperConfig, TrainConfig
from longtail.strategies.base import MethodConfig
from longtail.strategies.decoupling import InitConfig, upgrade_saved


@dataclass
class Config:
    name: str = "run"
    method: str | None = None  # the results-table method name (CONVENTIONS.md), e.g. "CE-DRW"
    recipe: str | None = None  # set by load_config: the recipe file this run came from
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # strategy.name picks the section's dataclass: the method's own (longtail.strategies)
    strategy: MethodConfig = field(default_factory=MethodConfig)
    init: InitConfig = field(default_factory=InitConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)


_SECTIONS = tuple(f.name for f in fields(Config) if is_dataclass(f.default_factory))  # type: ignore[arg-type]


def choices() -> dict[str, tuple[str, ...]]:
    """Every key with a fixed set of values: each section class's ``choices`` (the registries'
    names among them: datasets, losses), the methods and their own keys."""
    from longtail.strategies.registry import strategy_choices

    out: dict[str, tuple[str, ...]] = {}
    for f in fields(Config):
        declared = getattr(f.default_factory, "choices", {})  # type: ignore[arg-type]
        out |= {f"{f.name}.{key}": options for key, options in declared.items()}
    return out | strategy_choices()


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if is_dataclass(node):
        keys: list[str] = []
        for f in fields(node):
            keys += _leaf_keys(getattr(node, f.name), f"{prefix}{f.name}.")
        return keys
    return [prefix.rstrip(".")]


def _method_name(layers: list[tuple[str, dict[str, Any]]], overrides: Sequence[str]) -> str:
    """The ``strategy.name`` the layers and overrides end with (the last one given wins)."""
    name: Any = MethodConfig().name
    for _, layer in layers:
        section = layer.get("strategy")
        if isinstance(section, dict) and "name" in section:
            name = section["name"]
    for item in overrides:
        key, value = _parse_override(item)
        if key == "strategy.name":
            name = value
        elif key == "strategy" and isinstance(value, dict) and "name" in value:
            name = value["name"]
    return str(name)


def _method_section(name: str) -> MethodConfig:
    """The default ``strategy.*`` section of method ``name`` (one line for an unknown name)."""
    from longtail.strategies.registry import method_config

    return method_config(name)()


def all_keys() -> list[str]:
    """Every key a config may hold: the sections' and every method's ``strategy.*``."""
    from longtail.strategies.registry import strategy_keys

    keys = _leaf_keys(Config())
    return keys + [k for k in strategy_keys() if k not in keys]


def _one_line(err: OmegaConfBaseException, source: str, method: str = "") -> LongtailError:
    """Turn an OmegaConf error into one line naming the key, the problem and the fix."""
    from longtail.strategies.registry import methods_with_key

    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0]
    unknown = "not in" in msg or "Key '" in msg and "not" in msg
    owners = methods_with_key(key, method) if unknown and key.startswith("strategy.") else []
    if owners:
        return LongtailError(
            f"'{key}' in {source} is not a key of strategy.name={method} ({', '.join(owners)}"
            f" {'has' if len(owners) == 1 else 'have'} it): drop it, or set strategy.name"
        )
    if unknown:
        suggestion = difflib.get_close_matches(key, all_keys(), n=1)
        hint = f" (did you mean '{suggestion[0]}'?)" if suggestion else ""
        return LongtailError(
            f"unknown config key '{key}' in {source}{hint}: remove it or fix its spelling"
        )
    return LongtailError(f"bad value for '{key}' in {source}: {msg}; fix the value")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item or item.startswith("="):
        raise LongtailError(f"override '{item}' is not key=value: write e.g. optim.lr=0.05")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LongtailError(f"override '{key}' goes below a plain value: check the key")
    node[parts[-1]] = value


def overrides_tree(overrides: list[str], allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a": {"b": 1}}``; with ``allowed``, only keys under those prefixes."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, value = _parse_override(item)
        if allowed is not None and not any(key == p or key.startswith(p + ".") for p in allowed):
            raise LongtailError(
                f"override '{key}' cannot be changed here: only {', '.join(allowed)} can"
            )
        _set_dotted(tree, key, value)
    return tree


def merge_config(
    layers: list[tuple[str, dict[str, Any]]],
    overrides: Sequence[str] = (),
    validate_it: bool = True,
) -> Config:
    """Defaults <- each (source, mapping) layer in order <- ``key=value`` overrides, validated.

    Layers merge mappings key by key; an override SETS its key, so ``model.kwargs={}`` empties a
    mapping a recipe filled (``model.kwargs.width=0.5`` changes one entry). Raises LongtailError.
    """
    method = _method_name(layers, overrides)
    base: DictConfig = OmegaConf.structured(Config(strategy=_method_section(method)))
    for source, layer in layers:
        bad = [k for k, v in layer.items() if k in _SECTIONS and not isinstance(v, dict | None)]
        if bad:
            raise LongtailError(f"'{bad[0]}' in {source} must be a mapping of keys, not a value")
        try:
            base = OmegaConf.merge(base, layer)  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            raise _one_line(err, source, method) from None
    for item in overrides:
        key, value = _parse_override(item)
        overrides_tree([item])  # the same shape checks as a layer
        if key.split(".")[0] in _SECTIONS and "." not in key and not isinstance(value, dict):
            raise LongtailError(
                f"'{key}' on the command line must be a mapping of keys, not a value"
            )
        try:
            if key in _SECTIONS and isinstance(value, dict):  # a whole section, from its defaults
                default = _method_section(method) if key == "strategy" else getattr(Config(), key)
                value = OmegaConf.merge(OmegaConf.structured(default), value)
            OmegaConf.update(base, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise _one_line(err, "the command line", method) from None
    try:
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as err:
        raise _one_line(err, "the config", method) from None
    assert isinstance(cfg, Config)
    if validate_it:  # off for a recipe read only as the reference its overrides complete
        validate(cfg)
    return cfg


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- recipe YAML <- ``key=value`` overrides, validated. Raises LongtailError.

    When the overrides change a recipe's ``train.epochs``, its epoch-valued keys scale with it
    (:mod:`longtail.epoch_events`), and one line on stderr says which.
    """
    from longtail.epoch_events import scale_to_epochs

    layers: list[tuple[str, dict[str, Any]]] = []
    if recipe is not None:
        layers += recipe_layers(Path(recipe))
        layers.append(("the recipe path", {"recipe": str(recipe)}))
    cfg = merge_config(layers, overrides or ())
    given = {_parse_override(o)[0] for o in overrides or ()}
    if recipe is None or not ({"train.epochs", "train"} & given):  # nothing to scale from
        return cfg
    as_written = merge_config(layers, validate_it=False)
    cfg, changes = scale_to_epochs(cfg, as_written, given)
    if changes:
        validate(cfg)
        one = " -- a 1-epoch run ends before epoch 1: it reaches none of these events"
        if os.environ.get("RANK", "0") == "0":  # once under torchrun
            print(f"config: train.epochs={cfg.train.epochs} (the recipe's {as_written.train.epochs}):"
                  f" scaled {'; '.join(changes)} (schedule.scale_with_epochs=false keeps them)"
                  f"{one if cfg.train.epochs == 1 else ''}", file=sys.stderr)  # fmt: skip
    return cfg


def validate(cfg: Config) -> None:
    """Check values that types alone cannot: choices, ranges, cross-field consistency.

    Each section checks its own rules; the method checks its section and what it needs of the
    others (:func:`longtail.strategies.registry.check_method`); the run-wide rules are here.
    """
    from longtail.config_checks import check_values
    from longtail.strategies.registry import check_method

    check_values(cfg)  # finite numbers, seeds, momentum: before any rule reads them
    for key, options in choices().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name, options[0])  # another method's key
        if value not in options:
            raise LongtailError(
                f"{key}={value!r} is not one of {', '.join(options)}: pick one of them"
            )
    for section in ("data", "train", "optim", "eval"):
        getattr(cfg, section).check()
    cfg.loss.check(cfg.model.classifier)
    cfg.schedule.check()
    check_method(cfg)  # the method's own rules, and SAM / compile / init against it
    for section in ("sam", "probe", "init"):
        getattr(cfg, section).check()
    if not cfg.name or "/" in cfg.name or cfg.name in (".", "..") or "\\" in cfg.name:
        raise LongtailError(
            f"name={cfg.name!r} must be one folder name (no '/'): e.g. name=ce-r100"
        )


def to_dict(cfg: Config) -> dict[str, Any]:
    return asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(tree: dict[str, Any], source: str = "a saved config") -> Config:
    """Rebuild a Config from a resolved dump (a run folder's config.yaml).

    A folder written before methods owned their sections holds every method's ``strategy.*``
    keys; those the run's method has not had no effect on it and are dropped here.
    """
    tree = upgrade_saved(tree)  # a stage 2 written as strategy.name=supervised
    section = tree.get("strategy")
    if isinstance(section, dict):
        try:
            known = {
                f.name for f in fields(_method_section(str(section.get("name", "supervised"))))
            }
        except LongtailError:
            known = set(section)  # an unknown method: merge_config says so in one line
        tree = {**tree, "strategy": {k: v for k, v in section.items() if k in known}}
    return merge_config([(source, tree)])

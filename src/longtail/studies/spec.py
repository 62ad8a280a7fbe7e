"""A study spec: which recipes to train under which settings, and where the results go.

A spec is a small YAML file (``recipes/studies/*.yaml``) with a ``study`` kind and its keys; the
command line changes it with ``study.<key>=value`` overrides (``study.ratios=[1,100]``,
``study.only=[CE]``, ``study.pretrain_only=[balanced]``: a slice of a study, which merges into the
same results file). Every problem is a one-line :class:`~longtail.errors.LongtailError`, raised
before anything trains.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from longtail.config import overrides_tree
from longtail.errors import LongtailError
from longtail.recipe_files import read_yaml_mapping

COMMON_KEYS = ("study", "results", "methods", "overrides", "only", "seeds")
KIND_KEYS = {"sweep": ("ratios", "total"), "equal_size": ("pretrain",)}
OPTIONAL_KIND_KEYS = {"sweep": (), "equal_size": ("pretrain_only",)}  # may be left out
STUDY_PREFIX = "study."
V = TypeVar("V")


@dataclass
class StudySpec:
    """A validated spec. Paths are as written: relative ones resolve against the current folder."""

    study: str  # sweep | equal_size
    source: str  # the spec file, for messages
    results: Path
    methods: dict[str, str]  # results method name -> recipe path (only the selected methods)
    overrides: list[str] = field(default_factory=list)  # key=value for every run
    ratios: list[float] = field(default_factory=list)  # sweep
    total: int = 0  # sweep: data.total of every run
    pretrain: dict[str, list[str]] = field(default_factory=dict)  # equal_size: name -> overrides
    seeds: list[int] = field(default_factory=lambda: [0])  # train.seed of each repetition


@dataclass
class RunPlan:
    """One training of a study: its record key and the overrides the study itself sets."""

    key: tuple[Any, ...]  # (method, ratio, seed) or (method, pretrain, seed)
    method: str
    recipe: str
    label: str  # "r=10", "balanced": for progress lines
    overrides: list[str]  # set by the study (ratio, total, name, method), applied first


@dataclass(frozen=True)
class StudyKind:
    """What differs between studies: the runs, a record per run, the table and the plot."""

    key_fields: tuple[str, ...]
    controlled: Callable[[StudySpec], set[str]]  # config keys only the study may set
    plan: Callable[[StudySpec], list[RunPlan]]
    record: Callable[[RunPlan, Any, dict[str, Any], Path], dict[str, Any]]  # plan, cfg, final, run
    table: Callable[[list[dict[str, Any]]], str]
    plot: Callable[[list[dict[str, Any]], Path], None]


def file_safe(method: str) -> str:
    """A method name usable inside a run folder name: anything but ``[A-Za-z0-9._+-]`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", method)


def split_overrides(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """(``study.*`` overrides, every other override), each in the order given."""
    study = [o for o in overrides if o.startswith(STUDY_PREFIX)]
    rest = [o for o in overrides if not o.startswith(STUDY_PREFIX)]
    bare = [o for o in rest if o.split("=", 1)[0] == "study"]
    if bare:
        raise LongtailError(f"override '{bare[0]}' names no spec key: write study.<key>=value")
    return study, rest


def load_spec(path: str | Path, study_overrides: Sequence[str] = ()) -> StudySpec:
    """Read ``path``, apply ``study.<key>=value`` overrides, validate. Raises LongtailError."""
    source = str(path)
    raw = read_yaml_mapping(Path(path), "study spec")
    changes = overrides_tree(list(study_overrides), ("study",)).get("study", {})
    for key, value in changes.items():
        old = raw.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            value = {**old, **value}  # study.methods.X=... adds or changes one entry
        raw[key] = value

    kind = raw.get("study")
    if kind not in KIND_KEYS:
        raise LongtailError(
            f"{source}: study={kind!r} is not one of {', '.join(KIND_KEYS)}: set 'study:'"
        )
    allowed = COMMON_KEYS + KIND_KEYS[kind] + OPTIONAL_KIND_KEYS[kind]
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LongtailError(
                f"{source}: unknown {kind} spec key '{key}'{hint}: use {', '.join(allowed)}"
            )
    missing = [k for k in ("results", "methods", *KIND_KEYS[kind]) if raw.get(k) is None]
    if missing:
        raise LongtailError(f"{source}: the {kind} spec needs '{missing[0]}': add it")

    results = raw["results"]
    if not isinstance(results, str) or not results.endswith(".json"):
        raise LongtailError(f"{source}: results={results!r} must be a .json path")
    spec = StudySpec(
        study=kind,
        source=source,
        results=Path(results),
        methods=_methods(raw["methods"], raw.get("only"), source),
        overrides=_override_list(raw.get("overrides") or [], "overrides", source),
        seeds=_seeds(raw.get("seeds", [0]), source),
    )
    if kind == "sweep":
        spec.ratios = _ratios(raw["ratios"], source)
        spec.total = _total(raw["total"], source)
    else:
        sets = _pretrain(raw["pretrain"], source)
        spec.pretrain = _only(sets, raw.get("pretrain_only"), "pretrain_only", "set", source)
    return spec


def _methods(methods: Any, only: Any, source: str) -> dict[str, str]:
    if not isinstance(methods, dict) or not methods:
        raise LongtailError(f"{source}: methods must map method names to recipe files")
    safe: dict[str, str] = {}
    for name, recipe in methods.items():
        if not isinstance(name, str) or not name or not isinstance(recipe, str):
            raise LongtailError(f"{source}: method {name!r}: {recipe!r} must be NAME: recipe.yaml")
        if not Path(recipe).is_file():
            raise LongtailError(
                f"{source}: recipe {recipe} of method {name} does not exist: fix its path"
                " (relative paths resolve against the current folder)"
            )
        if file_safe(name) in safe:
            raise LongtailError(
                f"{source}: methods {safe[file_safe(name)]} and {name} share the run name"
                f" {file_safe(name)}: rename one"
            )
        safe[file_safe(name)] = name
    return _only(methods, only, "only", "method", source)


def _only(items: dict[str, V], only: Any, key: str, what: str, source: str) -> dict[str, V]:
    """The entries of ``items`` that ``study.<key>`` names, in spec order (all when it is unset)."""
    if only is None:
        return dict(items)
    chosen = [only] if isinstance(only, str) else only
    if not isinstance(chosen, list) or not chosen:
        example = ",".join(list(items)[:2])
        raise LongtailError(f"{source}: study.{key}={only!r} must list {what}s, e.g. [{example}]")
    for name in chosen:
        if name not in items:
            raise LongtailError(
                f"{source}: study.{key} names {name!r}, not a {what} of this study:"
                f" pick from {', '.join(items)}"
            )
    return {name: value for name, value in items.items() if name in chosen}


def _override_list(value: Any, what: str, source: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(o, str) and "=" in o for o in items):
        raise LongtailError(f"{source}: {what} must be a list of key=value strings")
    for item in items:
        if item.startswith(STUDY_PREFIX):
            raise LongtailError(f"{source}: {what} holds '{item}': set spec keys directly")
    return list(items)


def _ratios(value: Any, source: str) -> list[float]:
    items = value if isinstance(value, list) else [value]
    ratios: list[float] = []
    for r in items:
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or r < 1:
            raise LongtailError(
                f"{source}: ratio {r!r} must be a number >= 1 (r = n_max / n_min, 1 is balanced)"
            )
        if float(r) in ratios:
            raise LongtailError(f"{source}: ratio {r} is listed twice: list each ratio once")
        ratios.append(float(r))
    if not ratios:
        raise LongtailError(f"{source}: ratios is empty: list at least one, e.g. [1, 100]")
    return ratios


def _seeds(value: Any, source: str) -> list[int]:
    """Distinct seeds in NumPy's range; a study repeats every run once per seed."""
    items = value if isinstance(value, list) else [value]
    ok = all(not isinstance(v, bool) and isinstance(v, int) and 0 <= v < 2**32 for v in items)
    if not items or not ok or len(set(items)) != len(items):
        raise LongtailError(
            f"{source}: seeds={value!r} must list distinct whole numbers in [0, 2^32), e.g. [0, 1, 2]"
        )
    return list(items)


def seeded(seed: int, name: str) -> list[str]:
    """A repetition's overrides: its seed, and its own run name (seed 0 keeps the plain name, so
    run folders of studies made before seeds existed are reused)."""
    return [f"train.seed={seed}", f"name={name}" if seed == 0 else f"name={name}-s{seed}"]


def _total(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LongtailError(f"{source}: total={value!r} must be a whole number >= 1, e.g. 12406")
    return value


def _pretrain(value: Any, source: str) -> dict[str, list[str]]:
    if not isinstance(value, dict) or not value:
        raise LongtailError(f"{source}: pretrain must map names to override lists")
    sets: dict[str, list[str]] = {}
    for name, overrides in value.items():
        if not isinstance(name, str) or file_safe(name) != name:
            raise LongtailError(
                f"{source}: pretrain name {name!r} must use only letters, digits and . _ + -"
            )
        sets[name] = _override_list(overrides, f"pretrain.{name}", source)
    return sets

"""The method registry: ``strategy.name`` -> the :class:`~longtail.strategies.base.Method` class.

Every public module of :mod:`longtail.strategies` is imported once, on the first lookup; a method
module registers its class with :func:`register` as it is imported. So a new method is a new
module: no list of names to extend anywhere else (``tests/test_layers.py`` checks that methods
do not import each other).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar

from longtail.errors import LongtailError
from longtail.strategies.base import Method, MethodConfig

if TYPE_CHECKING:
    from longtail.config import Config

M = TypeVar("M", bound=type[Method])

_METHODS: dict[str, type[Method]] = {}
_NOT_METHODS = ("base", "registry")  # modules of this package that only serve methods
_loaded = False


def register(cls: M) -> M:
    """Class decorator: make ``cls`` the method named by its config's ``name`` default."""
    name = cls.name()
    if name in _METHODS and _METHODS[name] is not cls:
        raise LongtailError(
            f"method {name!r} is registered twice ({_METHODS[name].__module__} and"
            f" {cls.__module__}): rename one"
        )
    _METHODS[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    import longtail.strategies as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            importlib.import_module(f"{package.__name__}.{info.name}")
    _loaded = True


def methods() -> dict[str, type[Method]]:
    """Every registered method, ``supervised`` first, then by name."""
    _load()
    return dict(sorted(_METHODS.items(), key=lambda item: (item[0] != "supervised", item[0])))


def method_names() -> tuple[str, ...]:
    return tuple(methods())


def get_method(name: str) -> type[Method]:
    """The method called ``name``; an unknown name is one line listing the known ones."""
    known = methods()
    if name not in known:
        raise LongtailError(
            f"strategy.name={name!r} is not one of {', '.join(known)}: pick one of them"
        )
    return known[name]


def method_config(name: str) -> type[MethodConfig]:
    """The ``strategy.*`` dataclass of method ``name``."""
    return get_method(name).config_class


def strategy_choices() -> dict[str, tuple[str, ...]]:
    """``strategy.name`` and every method's own keys with a fixed set of values."""
    out = {"strategy.name": method_names()}
    for method in methods().values():
        out |= {f"strategy.{key}": options for key, options in method.choices.items()}
    return out


def strategy_keys() -> list[str]:
    """Every ``strategy.*`` key some method's section holds, each once."""
    keys: dict[str, None] = {}
    for method in methods().values():
        keys |= {f"strategy.{f.name}": None for f in fields(method.config_class)}
    return list(keys)


def methods_with_key(key: str, but: str) -> list[str]:
    """The methods other than ``but`` whose section has ``key`` (``strategy.k`` or ``k``)."""
    leaf = key.removeprefix("strategy.")
    return [
        name
        for name, m in methods().items()
        if name != but and leaf in {f.name for f in fields(m.config_class)}
    ]


def trains_classifier(name: str) -> bool:
    """Whether a run of method ``name`` trains its classifier (else it is a representation)."""
    return get_method(name).trains_classifier


def _names(flag: str) -> str:
    return ", ".join(n for n, m in methods().items() if getattr(m, flag))


def check_method(cfg: Config) -> None:
    """The method's own rules, then the shared ones its flags decide (SAM, rwSAM, compile, init)."""
    method = get_method(cfg.strategy.name)
    name = cfg.strategy.name
    if cfg.train.compile and not method.supports_compile:
        raise LongtailError(
            f"train.compile is not wired for strategy.name={name} ({_names('supports_compile')}"
            " steps only): set train.compile=false"
        )
    method.check(cfg)
    if cfg.sam.rho > 0 and not method.supports_sam:
        raise LongtailError(
            f"sam.rho > 0 with strategy.name={name}: its key encoder, queue or curriculum would"
            f" step twice per batch; use SAM with {_names('supports_sam')}"
        )
    if cfg.sam.weights != "none" and not method.example_weights:
        raise LongtailError(
            f"sam.weights={cfg.sam.weights} re-weights a pre-training loss: use it with"
            f" strategy.name {_names('example_weights')}, or set sam.weights=none for plain SAM"
        )
    if cfg.init.freeze != "none" and not method.restages:
        raise LongtailError(
            f"init.freeze={cfg.init.freeze} re-trains a classifier: set strategy.name="
            + " or ".join(n for n, m in methods().items() if m.restages)
        )

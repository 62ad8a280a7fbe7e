"""Models by name: ``create_model("resnet32", num_classes=10)``. A new model costs one line here.

Every builder takes ``(num_classes, in_chans, *, <its own keyword options>)`` and returns a
:class:`~longtail.models.backbone.Backbone`; tests loop over :func:`list_models`, so a model
added here is tested for free.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable

from longtail.errors import LongtailError
from longtail.models import resnet, resnet_cifar
from longtail.models.backbone import Backbone

_MODELS: dict[str, Callable[..., Backbone]] = {
    "resnet20": resnet_cifar.resnet20,
    "resnet32": resnet_cifar.resnet32,
    "resnet44": resnet_cifar.resnet44,
    "resnet56": resnet_cifar.resnet56,
    "resnet110": resnet_cifar.resnet110,
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnet152": resnet.resnet152,
    "resnext50_32x4d": resnet.resnext50_32x4d,
}


def list_models() -> list[str]:
    """Names :func:`create_model` accepts, sorted."""
    return sorted(_MODELS)


def model_options(name: str) -> dict[str, object]:
    """The keyword options of model ``name`` with their defaults (beyond num_classes, in_chans)."""
    builder = _builder(name)
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def create_model(name: str, num_classes: int, in_chans: int = 3, **kwargs: object) -> Backbone:
    """Model ``name`` with ``num_classes`` logits (0: pooled features) for ``in_chans`` channels.

    Raises :class:`LongtailError` for an unknown name, an unknown option, or a bad value.
    """
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        valid = ", ".join(options) or "none"
        raise LongtailError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}: its options are {valid}"
        )
    num_classes = _count(num_classes, minimum=0, what=f"num_classes for model {name!r}")
    in_chans = _count(in_chans, minimum=1, what=f"in_chans for model {name!r}")
    for key, value in kwargs.items():
        default = options[key]
        if type(default) is float and isinstance(value, int) and not isinstance(value, bool):
            continue  # width=2 is as good as width=2.0
        if not isinstance(value, type(default)):
            raise LongtailError(
                f"option {key}={value!r} for model {name!r} should be a "
                f"{type(default).__name__} (default {default!r}): fix its value"
            )
    return _builder(name)(num_classes, in_chans, **kwargs)


def _builder(name: str) -> Callable[..., Backbone]:
    if name not in _MODELS:
        raise LongtailError(f"unknown model {name!r}: use one of {', '.join(list_models())}")
    return _MODELS[name]


def _count(value: object, minimum: int, what: str) -> int:
    """``value`` as a plain int (numpy integers accepted), at least ``minimum``."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise LongtailError(f"{what} is {value!r}: use an integer >= {minimum}")
    return number

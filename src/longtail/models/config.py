"""model.*: which network a run builds, and from which weights it starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class ModelConfig:
    """The network (longtail list models) and its classifier."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"classifier": ("linear", "cosine")}

    name: str = "resnet32"
    classifier: str = "linear"  # linear | cosine
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {stem: cifar} for resnet18
    # a torchvision-format state dict to start from (ImageNet weights for Places-LT); the
    # classifier is taken only when it fits (same classes), else trained from its initialisation
    pretrained: str | None = None

"""Parameter groups: optionally no weight decay on 1-D tensors (biases, norm scales and shifts)."""

from __future__ import annotations

from typing import Any

from torch import nn


def param_groups(model: nn.Module, weight_decay: float, no_decay_1d: bool) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and, if asked, an undecayed 1-D group.

    Decaying BatchNorm scales and biases is what the LDAM-DRW and Hybrid CIFAR code does (the
    default); ``no_decay_1d`` follows the now-common practice of exempting them.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_1d:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]

"""The optimisers a recipe can name (``optim.name``): SGD, AdamW and LARS.

* ``sgd``: heavy-ball (or Nesterov) momentum with coupled L2 weight decay, what every CIFAR-LT and
  ImageNet-LT code base in this field uses;
* ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter, ICLR 2019), torch's;
* ``lars``: layer-wise adaptive rate scaling (You et al. 2017) in the PyTorch form VISSL and Barlow
  Twins use for large-batch self-supervised pre-training -- see :class:`LARS`.

The learning rate is set per step by the schedule (:mod:`longtail.optim.schedules`); ``optim.lr``
is the base rate. With ``optim.no_decay_1d`` biases and norm parameters (1-D tensors) get no weight
decay, and under LARS no layer-wise adaptation either (SimCLR's exclusion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from longtail.optim.config import OptimConfig
from longtail.optim.param_groups import param_groups


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose step for each tensor is scaled by its trust ratio (You et al. 2017).

    For a parameter w [any shape] with gradient g, per step (VISSL's / Barlow Twins' PyTorch form,
    the learning rate outside the momentum; SimCLR's TensorFlow code accumulates ``lr * q * d`` in
    the momentum instead, which differs while the schedule changes the rate)::

        d = g + weight_decay * w
        q = eta * ||w|| / ||d||      if adapted and both norms > 0, else 1
        v = momentum * v + q * d
        w = w - lr * v

    A group with ``adapt=False`` (SimCLR and VISSL exclude biases and BatchNorm parameters) takes
    plain momentum SGD steps. ``eta`` is the trust coefficient (0.001 in all of them).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        adapt: bool = True,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta,
                    "adapt": adapt}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                if group["adapt"]:
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = torch.where(
                        (w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, 1.0
                    )
                    d = d * trust
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.name`` over the model's trainable parameters (param_groups)."""
    groups = param_groups(model, cfg.weight_decay, cfg.no_decay_1d)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]),
                                 eps=cfg.eps)  # fmt: skip
    if cfg.name == "lars":
        if cfg.no_decay_1d:  # the undecayed 1-D group is not adapted either
            groups[1]["adapt"] = False
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, eta=cfg.lars_eta)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)

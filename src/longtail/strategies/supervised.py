"""Supervised training of a classifier: the model's logits scored by the run's objective.

The objective is any classification loss of :mod:`longtail.losses` behind
:class:`~longtail.losses.objective.Objective`'s interface (CE, focal, class-balanced, LDAM, with DRW
weights switched per epoch): ``criterion(logits [B, C] float32, labels [B]) -> []``. With
``sam.rho > 0`` the :class:`~longtail.optim.stepper.Stepper` takes SAM / ASAM steps of it
(unweighted: ``reweighted`` changes nothing here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.strategies.base import Method, MethodConfig, MethodParts
from longtail.strategies.registry import register


@register
class Supervised(Method):
    """forward: ``(x [B, C, H, W], y [B]) -> logits [B, num_classes]``; loss: the criterion.

    Its section has no keys of its own (``strategy.name=supervised``): the batches are
    ``train.sampler``'s, the criterion is ``loss.*``. A decoupled stage (cRT, LWS) is a
    supervised run that starts from another run (``init.*``, :mod:`.decoupling`).
    """

    config_class = MethodConfig
    restages = True
    summary = (
        "a classifier trained on the loss.* objective (CE, focal, CB, LDAM-DRW, LA, BS; cRT, LWS)"
    )
    _logits: Callable[[Tensor], Tensor]

    @classmethod
    def build(cls, parts: MethodParts, cfg: MethodConfig) -> tuple[Any, Supervised]:
        loader = parts.loader(parts.train.sampler, [(parts.augment, "view1")])
        return loader, cls(parts.net, parts.objective, parts.train.compile)

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[Tensor, Tensor], Tensor],
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        # not a registered submodule: the compiled wrapper shares model's parameters
        self.__dict__["_logits"] = torch.compile(model) if compile else model

    def forward(self, batch: Any) -> Tensor:
        x, _ = batch
        return self._logits(x)

    def loss(self, logits: Tensor, batch: Any, reweighted: bool = False) -> Tensor:
        return self.criterion(runtime.at_least_fp32(logits), batch[1])

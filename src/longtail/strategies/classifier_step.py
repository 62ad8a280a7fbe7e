"""The step of every method that trains a classifier on one view: logits scored by the objective.

The objective is any classification loss of :mod:`longtail.losses` behind
:class:`~longtail.losses.objective.Objective`'s interface (CE, focal, class-balanced, LDAM, with DRW
weights switched per epoch): ``criterion(logits [B, C] float32, labels [B]) -> []``. With
``sam.rho > 0`` the :class:`~longtail.optim.stepper.Stepper` takes SAM / ASAM steps of it
(unweighted: ``reweighted`` changes nothing here). Shared by ``supervised`` and ``decoupled``
(a module that registers no method, so methods need not import each other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.strategies.base import Method, MethodConfig, MethodParts


class ClassifierTraining(Method):
    """forward: ``(x [B, C, H, W], y [B]) -> logits [B, num_classes]``; loss: the criterion.

    The batches are ``train.sampler``'s, one ``augment.*`` view each; the criterion is ``loss.*``.
    """

    _logits: Callable[[Tensor], Tensor]

    @classmethod
    def build(cls, parts: MethodParts, cfg: MethodConfig) -> tuple[Any, ClassifierTraining]:
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

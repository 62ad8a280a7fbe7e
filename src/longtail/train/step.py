"""One supervised optimisation step, shared by the trainer and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from longtail import runtime
from longtail.config import SamConfig
from longtail.optim.sam import sam_step


class SupervisedStep:
    """forward (autocast) -> classification loss on float32 logits -> backward -> SGD step.

    The loss stays on the device (no host sync); the caller reads it when it chooses to. With
    ``sam.rho > 0`` the step is a SAM / ASAM step (:func:`longtail.optim.sam.sam_step`, unweighted).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        device: torch.device,
        amp: torch.dtype | None,
        channels_last: bool,
        compile: bool = False,
        sam: SamConfig | None = None,
    ) -> None:
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.optimizer = optimizer
        self.criterion = criterion
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.sam = sam if sam is not None and sam.rho > 0 else None

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Nothing changes per epoch in plain supervised training."""

    def __call__(self, batch: Any, lr: float) -> torch.Tensor:
        """batch: (x float [B, C, H, W] normalised, y int64 [B]) -> loss []."""
        x, y = batch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def closure() -> torch.Tensor:
            with runtime.autocast(self.amp, self.device):
                logits = self.forward(x)
            return self.criterion(logits.float(), y)

        if self.sam is not None:
            s = self.sam
            return sam_step(self.optimizer, closure, closure, rho=s.rho, adaptive=s.adaptive,
                            eta=s.eta, model=self.model)  # fmt: skip
        loss = closure()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

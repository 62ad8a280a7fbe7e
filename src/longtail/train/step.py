"""One supervised optimisation step, shared by the trainer and the benchmarks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.train import runtime


class CrossEntropyStep:
    """forward (autocast) -> cross-entropy in float32 -> backward -> SGD step.

    The loss stays on the device (no host sync); the caller reads it when it chooses to.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        amp: torch.dtype | None,
        channels_last: bool,
        compile: bool = False,
    ) -> None:
        self.model = model
        self.forward = torch.compile(model) if compile else model
        self.optimizer = optimizer
        self.device = device
        self.amp = amp
        self.channels_last = channels_last

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, lr: float, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x: float [B, C, H, W] normalised; y: int64 [B]; weight: float [C] or None -> loss []."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast(self.amp, self.device):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float(), y, weight=weight)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

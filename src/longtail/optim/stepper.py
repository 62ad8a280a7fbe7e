"""The one update step every training method shares.

A method (:mod:`longtail.strategies`) is an ``nn.Module`` that gives two things:

* ``forward(batch)`` -- its network passes; run here under the precision's autocast, with every
  image tensor of the batch in channels-last layout when asked;
* ``loss(out, batch, reweighted)`` -- its objective on those outputs, in float32 outside autocast
  (a contrastive similarity matrix in bf16 would lose the precision its temperature needs).
  ``reweighted`` is True only in SAM's first pass, where rwSAM weights the examples.

and optionally ``set_epoch(epoch, epochs)``, ``epoch_record()``, and ``step_state()`` /
``load_step_state(state)`` for random state a resume must restore. The :class:`Stepper` does the
rest, the same way for every method: learning rate, autocast, layout, ``zero_grad`` / backward /
``optimizer.step()``, or SAM / ASAM / rwSAM's two passes (:func:`longtail.optim.sam.sam_step`),
and returns the loss as a device tensor (no host sync; the loop reads it every few steps).

Gradient synchronisation: ``forward_module`` is what the passes call -- the method itself, or the
method wrapped for data parallelism (``DistributedDataParallel``), whose backward averages the
gradients over ranks. Both SAM passes synchronise by default, so W ranks take the step one process
would; ``sam_sync_first=False`` skips the first pass's synchronisation (each rank then perturbs by
its own gradient: faster, no longer equal to one process).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.optim.config import SamConfig
from longtail.optim.sam import sam_step


def channels_last(batch: Any) -> Any:
    """``batch`` with every 4-D floating tensor in channels-last layout (lists/tuples kept)."""
    if isinstance(batch, Tensor):
        if batch.dim() == 4 and batch.is_floating_point():
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, list | tuple):
        return type(batch)(channels_last(item) for item in batch)
    return batch


class Stepper:
    """One optimisation step of ``method`` on a batch: ``stepper(batch, lr) -> loss []``."""

    def __init__(
        self,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        amp: torch.dtype | None,
        channels_last: bool,
        sam: SamConfig | None = None,
        forward_module: nn.Module | None = None,
        sam_sync_first: bool = True,
    ) -> None:
        self.method = method
        self.forward_module = forward_module if forward_module is not None else method
        self.optimizer = optimizer
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.sam = sam if sam is not None and sam.rho > 0 else None
        self.sam_sync_first = sam_sync_first

    def set_epoch(self, epoch: int, epochs: int) -> None:
        hook = getattr(self.method, "set_epoch", None)
        if hook is not None:
            hook(epoch, epochs)

    def epoch_record(self) -> dict[str, Any]:
        """What the method reports per epoch (the hybrid curriculum's alpha, rwSAM's weights)."""
        hook = getattr(self.method, "epoch_record", None)
        return dict(hook()) if hook is not None else {}

    @property
    def stateful(self) -> bool:
        """Whether the method has random state a checkpoint must hold (a ``step_state`` that
        returns something)."""
        hook = getattr(self.method, "step_state", None)
        return hook is not None and hook() is not None

    def state_dict(self) -> dict[str, Any] | None:
        """The method's random state a resume needs (None when it has none)."""
        hook = getattr(self.method, "step_state", None)
        return hook() if hook is not None else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_step_state(state)  # type: ignore[operator]

    def loss(self, batch: Any, reweighted: bool = False) -> Tensor:
        """The method's loss on ``batch`` (forward under autocast, loss in float32); no step."""
        return self._pass(channels_last(batch) if self.channels_last else batch, reweighted)

    def __call__(self, batch: Any, lr: float) -> Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.channels_last:
            batch = channels_last(batch)
        if self.sam is not None:
            s = self.sam
            return sam_step(self.optimizer, self._first_pass(batch), lambda: self._pass(batch),
                            rho=s.rho, adaptive=s.adaptive, eta=s.eta,
                            model=self.method)  # fmt: skip
        loss = self._pass(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        return loss.detach()

    def _pass(self, batch: Any, reweighted: bool = False) -> Tensor:
        """Forward (autocast) and loss (float32) of a batch already laid out."""
        with runtime.autocast(self.amp, self.device):
            out = self.forward_module(batch)
        return self.method.loss(out, batch, reweighted)  # type: ignore[operator, no-any-return]

    def _first_pass(self, batch: Any) -> Callable[[], Tensor]:
        """SAM's perturbation pass: rwSAM-weighted, synchronised unless ``sam_sync_first=False``."""
        no_sync = getattr(self.forward_module, "no_sync", None)
        quiet: Callable[[], AbstractContextManager[Any]] = (
            no_sync if no_sync is not None and not self.sam_sync_first else nullcontext
        )

        def closure() -> Tensor:
            with quiet():  # DDP decides in its forward whether the backward synchronises
                return self._pass(batch, reweighted=True)

        return closure

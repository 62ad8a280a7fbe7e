"""SAM as an optimizer wrapper, for the Python API: ``SAM(torch.optim.SGD(...), rho=0.05)``.

The trainer calls :func:`longtail.optim.sam.sam_step` directly; this class holds the same step
behind the optimizer-shaped interface other SAM packages use, so a user's own loop reads::

    optimizer = SAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05, model=model)
    loss = optimizer.step(lambda: criterion(model(x), y))                     # SAM / ASAM
    loss = optimizer.step(plain, perturb_closure=lambda: weighted(model(x)))  # rwSAM
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from longtail.optim.sam import check_radius, sam_step


class SAM:
    """Sharpness-aware minimisation around a base optimizer (Foret et al. 2021; ASAM with
    ``adaptive``, Kwon et al. 2021). ``step`` needs closures: it runs two forward/backward passes."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        rho: float,
        adaptive: bool = False,
        eta: float = 0.0,
        model: nn.Module | None = None,
    ) -> None:
        check_radius(rho, eta)
        self.base_optimizer, self.rho, self.adaptive, self.eta = optimizer, rho, adaptive, eta
        self.model = model  # when given, BatchNorm statistics are frozen in the second pass

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base_optimizer.param_groups

    def step(
        self, closure: Callable[[], Tensor], perturb_closure: Callable[[], Tensor] | None = None
    ) -> Tensor:
        """One SAM step; ``closure`` builds the loss (no backward), ``perturb_closure`` the loss
        that defines the perturbation (rwSAM's weighted loss; default ``closure``). Returns the
        loss at the perturbed weights, detached."""
        return sam_step(self.base_optimizer, perturb_closure or closure, closure, rho=self.rho,
                        adaptive=self.adaptive, eta=self.eta, model=self.model)  # fmt: skip

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state)

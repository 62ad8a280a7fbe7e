"""MoCo's momentum (key) encoder: a frozen copy of the online encoder, updated by EMA.

MoCo (He et al. 2020, eq. 2): theta_k <- m theta_k + (1 - m) theta_q, m = 0.999, applied to the
*parameters* after each optimiser step.

Buffers (BatchNorm running statistics). MoCo v1/v2's ``builder.py`` and MoCo v3 EMA-update only
the parameters; the key encoder's BN buffers change only in its own forward passes, which run in
train mode (it is a submodule of the training model), so they track the statistics of *its*
activations under *its* weights. That is the default here (``buffers="own"``). The alternative,
``buffers="copy"``, copies the online encoder's buffers at every update (statistics of the online
activations: a slight mismatch with the EMA weights, but no dependence on the key encoder's
train/eval mode). timm's ``ModelEmaV2`` instead EMA-averages buffers; neither MoCo nor we do.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from longtail.errors import LongtailError

BufferPolicy = Literal["own", "copy"]


def _check_momentum(momentum: float) -> float:
    if not 0.0 <= momentum <= 1.0:
        raise LongtailError(f"momentum must lie in [0, 1], got {momentum}: MoCo uses 0.999")
    return float(momentum)


class MomentumEncoder(nn.Module):
    """A frozen deep copy of ``module`` (``requires_grad=False``) moved towards it by :meth:`update`.

    Forward runs the copy under ``torch.no_grad()`` and takes whatever the copied module takes.
    The copy is a submodule, so it follows ``.to(device)``, ``.train()`` / ``.eval()`` and
    ``state_dict`` of whatever model holds this encoder. An optimiser built over the whole model
    skips it: its parameters never receive a gradient.
    """

    def __init__(
        self, module: nn.Module, momentum: float = 0.999, buffers: BufferPolicy = "own"
    ) -> None:
        super().__init__()
        if buffers not in ("own", "copy"):
            raise LongtailError(
                f"buffers must be 'own' or 'copy', got {buffers!r}: fix the setting"
            )
        self.momentum = _check_momentum(momentum)
        self.buffers_policy: BufferPolicy = buffers
        self.encoder = copy.deepcopy(module)
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.encoder(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float | None = None) -> None:
        """EMA step theta_k <- m theta_k + (1 - m) theta_q after an optimiser step.

        Args:
            online: the query encoder this copy was made from (a DDP wrapper is unwrapped).
            momentum: overrides ``self.momentum`` for this step (MoCo v3 / BYOL raise m to 1 on a
                cosine schedule).
        """
        m = self.momentum if momentum is None else _check_momentum(momentum)
        if isinstance(online, DistributedDataParallel):
            online = online.module
        key_params = dict(self.encoder.named_parameters())
        online_params = dict(online.named_parameters())
        if key_params.keys() != online_params.keys():
            raise LongtailError(
                "the online module's parameters differ from the momentum encoder's: "
                "update with the same module the MomentumEncoder was built from"
            )
        keys: list[Tensor] = [key_params[name] for name in key_params]
        queries: list[Tensor] = [online_params[name].detach() for name in key_params]
        if keys:
            # foreach: a few batched kernels on GPU instead of two small kernels per tensor
            torch._foreach_mul_(keys, m)
            torch._foreach_add_(keys, queries, alpha=1.0 - m)
        if self.buffers_policy == "copy":
            online_buffers = dict(online.named_buffers())
            if online_buffers.keys() != dict(self.encoder.named_buffers()).keys():
                raise LongtailError(
                    "the online module's buffers differ from the momentum encoder's: "
                    "update with the same module the MomentumEncoder was built from"
                )
            for name, buffer in self.encoder.named_buffers():
                buffer.copy_(online_buffers[name])

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, buffers={self.buffers_policy!r}"

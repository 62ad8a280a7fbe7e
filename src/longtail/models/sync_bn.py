"""Optional SyncBatchNorm for multi-GPU training."""

from __future__ import annotations

import torch
from torch import nn

from longtail import dist


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Replace every BatchNorm layer by ``nn.SyncBatchNorm`` when it can work; else a no-op.

    SyncBatchNorm normalises with the statistics of the *global* batch (all ranks), which
    matters when the per-GPU batch is small. It only runs on accelerators: on CPU its forward
    raises ``ValueError('SyncBatchNorm expected input tensor to be on GPU ...')`` (measured with
    torch 2.13 + gloo). So ``model`` is returned unchanged, the same object, when no process
    group is initialised or ``device`` is a CPU; otherwise it is converted (weights and running
    statistics kept). ``device`` is where the model will run, because conversion usually
    happens before ``model.to(device)``. Give every rank equal batches (``drop_last=True``).
    """
    if not dist.is_distributed() or torch.device(device).type == "cpu":
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)

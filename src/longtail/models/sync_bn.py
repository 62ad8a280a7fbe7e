"""BatchNorm over the global batch for data-parallel training: torch's SyncBatchNorm on GPUs, and
:class:`GatheredBatchNorm` where that refuses to run (CPU tensors under gloo).

With W ranks of n images each, a synchronised BatchNorm normalises every rank's activations with
the statistics of all W * n images, so W ranks compute what one process computes on the whole
batch (the papers' settings: BN over 128 or 256 CIFAR images, not over a 64-image shard).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from longtail import dist


class GatheredBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are the global batch's, for any backend and device.

    Each rank computes its per-channel mean and biased variance over its n images, all ranks'
    pairs are gathered differentiably (:func:`longtail.dist.gather_with_grad`), and combined with
    equal weights (every rank holds n images; the gather checks it):

        mu = mean_r mu_r,    var = mean_r (var_r + (mu_r - mu)^2)        (Chan et al.'s pooling)

    ``y = (x - mu) / sqrt(var + eps) * weight + bias``; the running statistics move as
    ``nn.BatchNorm`` moves them, with the unbiased variance ``var * N / (N - 1)``, N = W * n.
    The gradient reaches every rank's inputs through the gathered statistics, so after DDP's
    averaging it is the single-process gradient. In evaluation it is the ``nn.BatchNorm`` forward.
    In training it always computes element-wise (one process too: the gather is then the
    identity), so W ranks and one process of this layer round alike; torch's fused kernel rounds
    differently (1e-7 relative), which a large loss scale (LDAM's s = 30) can grow to 1e-5 in a few
    steps. Shapes: [B, C] or [B, C, ...spatial].
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        local_mean = x.mean(dim=dims)
        local_var = x.var(dim=dims, unbiased=False)
        stats = dist.gather_with_grad(torch.stack([local_mean, local_var])[None])  # [W, 2, C]
        means, variances = stats[:, 0], stats[:, 1]
        mean = means.mean(dim=0)
        var = (variances + (means - mean) ** 2).mean(dim=0)
        self._update_running(mean.detach(), var.detach(), x.numel() // x.shape[1])
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _update_running(self, mean: Tensor, var: Tensor, local_count: int) -> None:
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        # momentum None: a cumulative moving average, as nn.BatchNorm
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        total = local_count * dist.world_size()
        unbiased = var * (total / max(total - 1, 1))
        with torch.no_grad():
            self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(
                unbiased.to(self.running_var.dtype), alpha=factor
            )


class ReplicatedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over rows every rank holds whole and alike (BCL's class centres, computed from
    the classifier's weights): never synchronised, since gathering W copies of the same rows would
    change the running variance's N / (N - 1) and count each row W times in the gradient."""


def to_gathered(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm layer replaced by :class:`GatheredBatchNorm` (the same
    parameters and running statistics, moved over; ``model`` itself is changed and returned)."""
    for name, child in list(model.named_children()):
        if isinstance(child, ReplicatedBatchNorm1d):
            continue
        if isinstance(child, _BatchNorm) and not isinstance(child, GatheredBatchNorm):
            gathered = GatheredBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            if child.affine:
                gathered.weight, gathered.bias = child.weight, child.bias
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(gathered, buffer, getattr(child, buffer))
            gathered.train(child.training)
            setattr(model, name, gathered)
        else:
            to_gathered(child)
    return model


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` with BatchNorm over the global batch when a process group is initialised.

    On an accelerator: ``nn.SyncBatchNorm`` (torch's fused kernels). On a CPU, where
    SyncBatchNorm's forward raises ``ValueError('SyncBatchNorm expected input tensor to be on
    GPU')`` (torch 2.13 + gloo): :class:`GatheredBatchNorm`. Without a process group the model is
    returned unchanged (the same object). ``device`` is where the model will run (conversion
    usually happens before ``model.to(device)``). Every rank needs equal batches.
    """
    if not dist.is_distributed():
        return model
    if torch.device(device).type == "cpu":
        return to_gathered(model)
    kept = [(n, m) for n, m in model.named_modules() if isinstance(m, ReplicatedBatchNorm1d) and n]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, module in kept:  # torch converts every BatchNorm: these are put back
        converted.set_submodule(name, module)
    return converted

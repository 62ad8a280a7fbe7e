"""Distributed helpers that degrade to one process: rank 0, world size 1, gathers are identities.

Nothing here assumes CUDA or an initialised process group; under ``torchrun`` the same calls
gather over the default group (gloo on CPU, NCCL on GPU).

Contrastive losses across ranks (SimCLR/SupCon "global batch" negatives). Each rank contrasts
its N_local *local* anchors against the *gathered* batch of N = W * N_local refs (memory
O(N_local * N) per rank, as open_clip's ``local_loss``)::

    loss = distributed_contrastive(loss_fn, local_features, local_labels)

which is ``loss_fn(local, labels, ref_features=gather_with_grad(local),
ref_labels=gather_no_grad(labels), self_offset=self_offset(N_local))`` plus the one scale that
makes the gradients right. Why a scale: the full-batch loss is L = (1/V) sum_i l_i over the V
anchors that have a positive. The gather's backward sums the gradients of every rank's loss
into the owner's rows, and DDP then *averages* parameter gradients over the W ranks; so rank r
must minimise W * (sum of its l_i) / V. When every anchor is valid (SimCLR; SupCon with two
views) that is exactly the local mean, but SupCon with single views or singleton classes gives
ranks different valid counts V_r, and the plain local mean is then wrong (open_clip#616 shows
the related factor-of-W pitfall). Consequences worth knowing: the gradient reaching a rank's
local features is W times the full-batch gradient of those rows (DDP's 1/W undoes it), and a
manual loop must average, not sum, parameter gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from longtail.errors import LongtailError


def is_distributed() -> bool:
    """True when a default process group exists (``torchrun`` + ``init_process_group``)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group; 0 without one."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Processes in the default group; 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (the process that logs and writes files)."""
    return rank() == 0


def self_offset(local_batch: int) -> int:
    """Row of this rank's first anchor in a gathered ref set: ``rank * local_batch``."""
    return rank() * local_batch


def _all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order); shapes must be equal."""
    shape = torch.tensor(x.shape, dtype=torch.long, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    dist.all_gather(shapes, shape)
    sizes = [tuple(s.tolist()) for s in shapes]
    if any(size != sizes[0] for size in sizes):
        raise LongtailError(
            f"all-gather needs the same tensor shape on every rank, got {sizes}: "
            "give every rank equal batches (drop_last=True in the data loader)"
        )
    parts = [torch.empty_like(x) for _ in range(world_size())]
    # the list form: no deprecation warning in torch 2.11-2.14, unlike all_gather_into_tensor
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums each rank's gradient of its rows and keeps its own slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.start = rank() * x.shape[0]
        ctx.length = x.shape[0]
        return _all_gather_cat(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # clone: all_reduce works in place and autograd may still own ``grad``
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.length]


def gather_with_grad(x: Tensor) -> Tensor:
    """Differentiable all-gather: ``[n, ...]`` per rank -> ``[world_size * n, ...]``, rank order.

    Backward: all_reduce(SUM) of the gradient, then this rank's rows, so each rank's ``x``
    receives the gradient of *every* rank's loss with respect to its rows. Every rank must call
    backward through the result (it is a collective). Equal shapes on every rank only: unequal
    batches raise :class:`LongtailError` (use ``drop_last=True``). Identity in one process.
    """
    if world_size() == 1:
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


@torch.no_grad()
def gather_no_grad(x: Tensor) -> Tensor:
    """All-gather without a graph (queue keys, labels): ``[n, ...]`` -> ``[world_size * n, ...]``."""
    if world_size() == 1:
        return x
    return _all_gather_cat(x)


def anchors_with_positive(labels: Tensor, ref_labels: Tensor, offset: int | None) -> Tensor:
    """Which anchors have a positive: a ref with the same label other than the anchor itself.

    This is the validity rule of InfoNCE (instance ids), SupCon and KCL. Shapes: labels [n],
    ref_labels [M], anchor i's own ref row is ``offset + i`` (None: not in the refs) -> [n] bool.
    """
    same = labels[:, None] == ref_labels[None, :]
    if offset is not None:
        rows = torch.arange(labels.shape[0], device=labels.device)
        same[rows, rows + offset] = False
    return same.any(dim=1)


def distributed_contrastive(
    loss_fn: Callable[..., Tensor],
    features: Tensor,
    labels: Tensor,
    *,
    has_positive: Callable[[Tensor, Tensor, int | None], Tensor] = anchors_with_positive,
    **kwargs: Any,
) -> Tensor:
    """A contrastive loss over the global batch, computed on this rank's anchors only.

    Args:
        loss_fn: ``loss_fn(features, labels, *, ref_features, ref_labels, self_offset, **kwargs)``
            returning the mean over its valid anchors (every longtail contrastive loss).
        features: [n, D] this rank's anchors (with a graph); labels: [n].
        has_positive: which local anchors the loss counts (see :func:`anchors_with_positive`);
            pass ``lambda labels, *_: torch.ones_like(labels, dtype=torch.bool)`` for a loss
            where every anchor counts. With ``anchor_weights=`` among ``kwargs`` (a weighted
            mean over the valid anchors) a rank's share is its valid anchors' weight.

    Returns:
        A scalar whose *value* is the full-batch loss (the same on every rank, so rank 0 can log
        it) and whose *gradient* is that of ``W * sum(local l_i) / V`` (module docstring), so
        that after DDP's averaging the parameter gradients equal the single-process full-batch
        gradients. Use it linearly (weights, sums): a nonlinear function of it would see the
        value and the gradient disagree. In one process: ``loss_fn(features, labels, **kwargs)``.
    """
    if world_size() == 1:
        return loss_fn(features, labels, **kwargs)
    offset = self_offset(features.shape[0])
    ref_labels = gather_no_grad(labels)
    local = loss_fn(
        features,
        labels,
        ref_features=gather_with_grad(features),
        ref_labels=ref_labels,
        self_offset=offset,
        **kwargs,
    )
    valid = has_positive(labels, ref_labels, offset)
    weights = kwargs.get("anchor_weights")
    # a weighted mean over the valid anchors (rwSAM's anchor weights) is made of their weights
    count = valid.sum() if weights is None else (weights * valid).sum()
    return global_mean(local, count)


def global_mean(local: Tensor, count: Tensor) -> Tensor:
    """The mean over the global batch, from this rank's mean ``local`` over its ``count`` items.

    ``count`` is how much this rank's mean is made of: its number of valid anchors, or the sum of
    its examples' class weights for a weighted mean (DRW's ``sum w_i l_i / sum w_i``). The value
    is the global mean ``sum_r count_r local_r / sum_r count_r`` (the same on every rank); the
    gradient is that of ``W * count_r * local_r / sum_r count_r``, so that DDP's averaging over the
    W ranks gives the global mean's gradient. A global count of 0 gives 0. Identity in one process.
    """
    if world_size() == 1:
        return local
    count = count.detach().to(local.dtype)
    # one collective for the value and the count: [sum of count_r * local_r, sum of count_r]
    totals = torch.stack([local.detach() * count, count])
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    total = totals[1].clamp_min(torch.finfo(local.dtype).tiny)
    objective = local * (count * world_size() / total)
    value = totals[0] / total
    return objective + (value - objective).detach()

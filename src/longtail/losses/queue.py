"""MoCo's queue of keys, with a label per key (KCL and SupCon-with-queue need labels).

MoCo (He et al. 2020, §3.2) keeps the keys of the last ``size`` samples as a FIFO dictionary:
each step the current mini-batch's keys are enqueued and the oldest are dequeued. A loss then
contrasts its anchors against ``contents()`` through its ``ref_features`` / ``ref_labels``
arguments (``self_offset=None``: an anchor is never in the queue).

Under DDP the caller gathers first (:func:`longtail.dist.gather_no_grad` on keys and labels) so
that every rank enqueues the same global batch and the queues stay identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError


class LabelledQueue(nn.Module):
    """A FIFO ring buffer of L2-normalised keys [size, dim] and their labels [size].

    Buffers (saved in ``state_dict``): ``keys`` [size, dim], ``labels`` [size] int64 with -1 marking
    an empty slot, ``ptr`` (the slot the next key goes to). Slots fill from 0 upward, so before
    the first wrap the filled slots are ``0 .. ptr-1``. A batch need not divide ``size``: it is
    written from ``ptr`` on and wraps to slot 0 (MoCo's code requires ``size % B == 0``; this
    does not). A batch larger than the queue keeps only its last ``size`` keys.
    """

    keys: Tensor
    labels: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if dim < 1 or size < 1:
            raise LongtailError(
                f"queue dim and size must be >= 1, got dim={dim}, size={size}: fix the queue settings"
            )
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @property
    def is_full(self) -> bool:
        """True once every slot holds a key (after ``size`` keys have been enqueued)."""
        return bool(self.labels[-1] >= 0)

    def __len__(self) -> int:
        """Number of filled slots."""
        return self.size if self.is_full else int(self.ptr)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor) -> None:
        """Append keys [B, dim] (normalised here; no gradient kept) and labels [B] (>= 0)."""
        if keys.dim() != 2 or keys.shape[1] != self.keys.shape[1]:
            raise LongtailError(
                f"queue keys must be [B, {self.keys.shape[1]}], got {list(keys.shape)}: "
                "enqueue the key encoder's projections"
            )
        if labels.shape != keys.shape[:1]:
            raise LongtailError(
                f"queue labels must be [{keys.shape[0]}], got {list(labels.shape)}: "
                "pass one label per key"
            )
        if bool((labels < 0).any()):
            raise LongtailError(
                "queue labels must be >= 0 (-1 marks an empty slot): fix the labels"
            )
        batch = keys.shape[0]
        start = max(0, batch - self.size)  # a batch longer than the queue: only its newest keys
        ptr = int(self.ptr)
        slots = (ptr + torch.arange(start, batch, device=self.keys.device)) % self.size
        self.keys[slots] = F.normalize(keys[start:].detach().to(self.keys), dim=1)
        self.labels[slots] = labels[start:].to(self.labels)
        self.ptr.fill_((ptr + batch) % self.size)

    def contents(self) -> tuple[Tensor, Tensor]:
        """The filled slots as copies: (keys [n, dim], labels [n]), in slot order.

        Slot order, not age order: contrastive losses do not depend on the order of their refs.
        Copies, so that enqueueing before ``backward`` (as MoCo does inside its forward) cannot
        change a tensor that autograd saved.
        """
        filled = len(self)
        return self.keys[:filled].clone(), self.labels[:filled].clone()

    def extra_repr(self) -> str:
        return f"dim={self.keys.shape[1]}, size={self.size}"

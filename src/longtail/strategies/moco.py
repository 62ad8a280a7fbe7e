"""MoCo v2 (He et al., CVPR 2020; Chen et al. 2020): a query contrasted with its own key and a queue.

The queue method of :mod:`longtail.strategies.queue_contrast` with no drawn positives: the own
key (the momentum encoder's view of the same image) is the only positive, every queued key a
negative (:func:`longtail.losses.kcl_queue.kcl_queue_loss` with k = 0, which is InfoNCE).
Labels are stored in the queue but change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from longtail.strategies.queue_contrast import QueueConfig, QueueContrast
from longtail.strategies.registry import register


@dataclass
class MoCoConfig(QueueConfig):
    """strategy.* of moco: the queue method's keys."""

    name: str = "moco"


@register
class MoCo(QueueContrast):
    config_class = MoCoConfig
    summary = "MoCo v2: InfoNCE against a momentum key queue (He et al. 2020)"

    @classmethod
    def positives_of(cls, cfg: QueueConfig) -> int:
        return 0

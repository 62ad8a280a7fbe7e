"""KCL stage 1 (Kang et al., ICLR 2021, "Exploring Balanced Feature Spaces"): MoCo with k positives.

For a batch of N instance-sampled images seen as two views, each query is contrasted with its
own key and the labelled queue; up to k same-class queue keys, drawn at random, are positives
besides its own key (:func:`longtail.losses.kcl_queue.kcl_queue_loss`, tau = 0.07, k = 6).
The encoders, the queue and the deliberate differences from BalFeat's code are in
:mod:`longtail.strategies.queue_contrast`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from longtail.strategies.base import require
from longtail.strategies.queue_contrast import QueueConfig, QueueContrast
from longtail.strategies.registry import register

if TYPE_CHECKING:
    from longtail.config import Config


@dataclass
class KCLConfig(QueueConfig):
    """strategy.* of kcl: the queue method's keys and k."""

    name: str = "kcl"
    k: int = 6  # positives drawn per anchor from the queue (BalFeat --posk 6)


@register
class KCL(QueueContrast):
    config_class = KCLConfig
    summary = "KCL stage 1: k same-class positives from a labelled MoCo queue (Kang et al. 2021)"

    @classmethod
    def positives_of(cls, cfg: QueueConfig) -> int:
        assert isinstance(cfg, KCLConfig)
        return cfg.k

    @classmethod
    def check(cls, cfg: Config) -> None:
        s = cfg.strategy
        assert isinstance(s, KCLConfig)
        require(("strategy.k", s.k, s.k >= 1, ">= 1 (KCL: 6)"))
        super().check(cfg)

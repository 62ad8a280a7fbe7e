"""SimCLR (Chen et al., ICML 2020): InfoNCE / NT-Xent, positives the other view of the same image.

Network, step, batches and rwSAM: :mod:`longtail.strategies.pretraining`.
"""

from __future__ import annotations

from dataclasses import dataclass

from longtail.strategies.base import ProjectedConfig
from longtail.strategies.pretraining import ContrastivePretrain
from longtail.strategies.registry import register


@dataclass
class SimCLRConfig(ProjectedConfig):
    """strategy.* of simclr: the projection head and the temperature."""

    name: str = "simclr"


@register
class SimCLR(ContrastivePretrain):
    config_class = SimCLRConfig
    uses_labels = False
    summary = "SimCLR: InfoNCE over two views of each image (Chen et al. 2020)"

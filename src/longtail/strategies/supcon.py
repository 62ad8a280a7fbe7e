"""SupCon (Khosla et al., NeurIPS 2020): every same-class view a positive (L_out, eq. 2).

Network, step, batches and rwSAM: :mod:`longtail.strategies.pretraining`.
"""

from __future__ import annotations

from dataclasses import dataclass

from longtail.strategies.base import ProjectedConfig
from longtail.strategies.pretraining import ContrastivePretrain
from longtail.strategies.registry import register


@dataclass
class SupConConfig(ProjectedConfig):
    """strategy.* of supcon: the projection head and the temperature."""

    name: str = "supcon"


@register
class SupCon(ContrastivePretrain):
    config_class = SupConConfig
    uses_labels = True
    summary = "SupCon: supervised contrastive pre-training (Khosla et al. 2020)"

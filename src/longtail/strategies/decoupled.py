"""The ``decoupled`` method: stage 2 of decoupled learning (Kang et al., ICLR 2020), cRT or LWS.

A run of it starts from a finished run (``init.run=RUN_DIR``) and re-trains part of its network as
``init.freeze`` says, with the :class:`~longtail.strategies.classifier_step.ClassifierTraining` step
(one ``augment.*`` view, the ``loss.*`` objective); the stage machinery (freezing, LWS, tau-norm, the
source's subset and weights, the frozen-tensor check) is :mod:`longtail.strategies.decoupling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from longtail.errors import LongtailError
from longtail.strategies.base import MethodConfig
from longtail.strategies.classifier_step import ClassifierTraining
from longtail.strategies.registry import register

if TYPE_CHECKING:
    from longtail.config import Config


@dataclass
class DecoupledConfig(MethodConfig):
    """``strategy.name=decoupled``: no keys of its own; what the stage keeps is ``init.*``."""

    name: str = "decoupled"


@register
class Decoupled(ClassifierTraining):
    """Stage 2 of decoupled learning: the :class:`ClassifierTraining` step on ``init.run``'s
    network, frozen as ``init.freeze`` says (the builder calls ``decoupling.wrap_for_stage``, then
    ``initialize``; the trainer ``check_frozen`` after the last epoch)."""

    config_class = DecoupledConfig
    restages = True
    summary = "stage 2 on a finished run: cRT or LWS, as init.freeze says (Kang et al. 2020)"

    @classmethod
    def check(cls, cfg: Config) -> None:
        if cfg.init.freeze == "none":
            raise LongtailError(
                "strategy.name=decoupled re-trains part of a finished run: set"
                " init.freeze=backbone (cRT, with init.reset_classifier=true) or"
                " init.freeze=all_but_scales (LWS), and init.run=RUN_DIR"
            )

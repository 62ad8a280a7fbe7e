"""Supervised training of a classifier: the model's logits scored by the run's objective (``loss.*``:
CE, focal, class-balanced, LDAM, logit-adjusted, balanced softmax, with DRW / DRS per epoch)."""

from __future__ import annotations

from longtail.strategies.base import MethodConfig
from longtail.strategies.classifier_step import ClassifierTraining
from longtail.strategies.registry import register


@register
class Supervised(ClassifierTraining):
    """The step of :class:`ClassifierTraining`; its section has no keys of its own
    (``strategy.name=supervised``). ``init.run`` may warm-start it from another run; a stage that
    freezes part of a finished run (cRT, LWS) is ``strategy.name=decoupled``."""

    config_class = MethodConfig
    summary = "a classifier trained on the loss.* objective (CE, focal, CB, LDAM-DRW, LA, BS)"

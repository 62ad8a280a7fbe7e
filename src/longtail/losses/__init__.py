"""Losses for long-tailed learning."""

from torch import nn

from longtail.losses.bcl import BCLLoss
from longtail.losses.class_balanced import ClassBalancedLoss
from longtail.losses.contrastive import InfoNCELoss, KCLLoss, SupConLoss
from longtail.losses.focal import FocalLoss
from longtail.losses.ldam import LDAMLoss, ldam_margins
from longtail.losses.logit_adjust import (
    BalancedSoftmaxLoss,
    LogitAdjustedLoss,
    logit_adjust_posthoc,
)
from longtail.losses.prototype import MPSCLoss, PSCLoss
from longtail.losses.queue import LabelledQueue
from longtail.losses.reweighting import class_balanced_weights
from longtail.losses.schedules import drs_mode, drw_weights, progressive_fraction
from longtail.losses.simsiam import SimSiamLoss, negative_cosine, simsiam_loss

# name -> class; each is called as loss(features, labels, *, ref_features, ref_labels, self_offset)
CONTRASTIVE_LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "supcon": SupConLoss,
    "kcl": KCLLoss,
    "psc": PSCLoss,
    "mpsc": MPSCLoss,
    "bcl": BCLLoss,
}

# name -> class; each is called as loss(logits [N, C], labels [N]) -> scalar. All but "ce" and
# "focal" take the training class counts as their first argument.
CLASSIFICATION_LOSSES: dict[str, type[nn.Module]] = {
    "ce": nn.CrossEntropyLoss,
    "focal": FocalLoss,
    "class_balanced": ClassBalancedLoss,
    "ldam": LDAMLoss,
    "logit_adjusted": LogitAdjustedLoss,
    "balanced_softmax": BalancedSoftmaxLoss,
}

__all__ = [
    "BCLLoss",
    "CLASSIFICATION_LOSSES",
    "CONTRASTIVE_LOSSES",
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "InfoNCELoss",
    "KCLLoss",
    "LabelledQueue",
    "MPSCLoss",
    "PSCLoss",
    "SimSiamLoss",
    "SupConLoss",
    "class_balanced_weights",
    "drs_mode",
    "drw_weights",
    "ldam_margins",
    "logit_adjust_posthoc",
    "negative_cosine",
    "progressive_fraction",
    "simsiam_loss",
]

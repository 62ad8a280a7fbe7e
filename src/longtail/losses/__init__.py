"""Losses for long-tailed learning."""

from torch import nn

from longtail.losses.contrastive import InfoNCELoss, KCLLoss, SupConLoss
from longtail.losses.prototype import MPSCLoss, PSCLoss
from longtail.losses.queue import LabelledQueue
from longtail.losses.reweighting import class_balanced_weights

# name -> class; each is called as loss(features, labels, *, ref_features, ref_labels, self_offset)
CONTRASTIVE_LOSSES: dict[str, type[nn.Module]] = {
    "infonce": InfoNCELoss,
    "supcon": SupConLoss,
    "kcl": KCLLoss,
    "psc": PSCLoss,
    "mpsc": MPSCLoss,
}

__all__ = [
    "CONTRASTIVE_LOSSES",
    "InfoNCELoss",
    "KCLLoss",
    "LabelledQueue",
    "MPSCLoss",
    "PSCLoss",
    "SupConLoss",
    "class_balanced_weights",
]

"""Models with one interface (timm's): ResNets for CIFAR and ImageNet layouts, classifier heads.

Build by name with :func:`create_model`; every model is a :class:`Backbone` with
``forward_features``, ``forward_head(pre_logits=...)``, ``reset_classifier`` and ``get_classifier``.
"""

from longtail.models.backbone import Backbone
from longtail.models.heads import (
    CLASSIFIER_KINDS,
    NormedLinear,
    ProjectionHead,
    build_classifier,
    tau_normalize,
)
from longtail.models.momentum import MomentumEncoder
from longtail.models.registry import create_model, list_models, model_options
from longtail.models.resnet import ResNet, resnet18, resnet34, resnet50
from longtail.models.resnet_cifar import (
    ResNetCifar,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from longtail.models.ssl_heads import SimSiamPredictor, SimSiamProjector
from longtail.models.sync_bn import convert_sync_batchnorm

__all__ = [
    "CLASSIFIER_KINDS",
    "MomentumEncoder",
    "convert_sync_batchnorm",
    "Backbone",
    "NormedLinear",
    "ProjectionHead",
    "ResNet",
    "ResNetCifar",
    "SimSiamPredictor",
    "SimSiamProjector",
    "build_classifier",
    "create_model",
    "list_models",
    "model_options",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet110",
    "tau_normalize",
]

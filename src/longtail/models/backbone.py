"""The one interface every model follows (timm's contract), and the pooled head they share.

A model is a feature extractor (``forward_features``: image -> feature map) followed by global
average pooling and a classifier ``fc`` (``forward_head``). Subclasses write only
``forward_features`` and call :meth:`Backbone._set_head` at the end of ``__init__`` so that ``fc``
comes last in the state dict, as in torchvision.
"""

from __future__ import annotations

import abc

from torch import Tensor, nn

from longtail.models.heads import build_classifier


class Backbone(nn.Module, abc.ABC):
    """Base class of every model: ``forward = forward_head . forward_features``.

    Attributes:
        num_features: width F of the pooled feature vector.
        num_classes: number of logits; 0 means ``fc`` is Identity and ``forward`` returns features.
        classifier_kind: ``"linear"`` or ``"cosine"`` (see :mod:`longtail.models.heads`).
    """

    num_features: int
    num_classes: int
    classifier_kind: str

    def _set_head(self, num_features: int, num_classes: int, kind: str) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.classifier_kind = kind
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = build_classifier(kind, num_features, num_classes)
        self._init_classifier(self.fc)

    def _init_classifier(self, head: nn.Module) -> None:
        """Hook for a family's own head initialisation; the default keeps PyTorch's."""

    @abc.abstractmethod
    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> feature map ``[B, num_features, h, w]``."""

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Feature map ``[B, F, h, w]`` -> pooled ``[B, F]`` (pre_logits) or logits ``[B, K]``.

        Pooling is the global average over all positions, so any input size works.
        """
        # flatten rather than view: view needs a compatible stride layout, flatten any layout.
        pooled = self.global_pool(x).flatten(1)
        return pooled if pre_logits else self.fc(pooled)

    def forward_pooled(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> pooled features ``[B, num_features]``: the representation."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, H, W]`` -> logits ``[B, num_classes]`` (pooled features when it is 0)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, kind: str | None = None) -> None:
        """Replace ``fc`` by a fresh head (``kind=None``: same kind); nothing else changes.

        The new head is created on the device and in the dtype of the current parameters.
        """
        kind = self.classifier_kind if kind is None else kind
        head = build_classifier(kind, self.num_features, num_classes)
        self._init_classifier(head)
        reference = next(self.parameters(), None)
        if reference is not None:
            head = head.to(device=reference.device, dtype=reference.dtype)
        self.fc = head
        self.num_classes = num_classes
        self.classifier_kind = kind

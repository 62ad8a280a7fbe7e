"""The CIFAR ResNets of He et al. 2016, "Deep Residual Learning for Image Recognition", Sec. 4.2.

Three stages of n basic blocks at 16 / 32 / 64 channels (times ``width``), a 3x3 stride-1 stem,
depth 6n + 2: ResNet-20/32/44/56/110 for n = 3/5/7/9/18. The default shortcut is the paper's
option A (stride-2 subsampling plus zero channels, no parameters), as in LDAM-DRW's and Hybrid-SC's
``resnet32`` (0.46M parameters); option B uses a 1x1 convolution + BN where the shape changes.
Global average pooling is adaptive, so any input size works (28x28 Fashion-MNIST included).

Module names follow torchvision (``conv1``, ``bn1``, ``layerK.i.conv1``, ``layerK.i.downsample``,
``fc``). LDAM's checkpoints call the head ``linear`` and the shortcut ``shortcut``: rename those
keys to load them.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.models.backbone import Backbone
from longtail.models.heads import NormedLinear

SHORTCUTS: tuple[str, ...] = ("A", "B")
BASE_WIDTH = 16


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel and zero-pad the new channels.

    ``[B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]``; the real channels sit in
    the middle (half the padding before, half after), as LDAM's ``LambdaLayer`` places them.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_before = (out_planes - in_planes) // 2
        self.pad_after = out_planes - in_planes - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class CifarBasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + s(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.downsample = PadShortcut(in_planes, planes, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def _stage(in_planes: int, planes: int, blocks: int, stride: int, shortcut: str) -> nn.Sequential:
    return nn.Sequential(
        CifarBasicBlock(in_planes, planes, stride, shortcut),
        *(CifarBasicBlock(planes, planes, 1, shortcut) for _ in range(blocks - 1)),
    )


class ResNetCifar(Backbone):
    """CIFAR ResNet of depth 6n + 2.

    ``forward_features``: ``[B, C_in, H, W] -> [B, 64 * width, H/4, W/4]`` (sizes rounded up).

    Args:
        blocks_per_stage: n, the number of basic blocks in each of the three stages.
        num_classes: logits; 0 makes ``forward`` return the pooled ``[B, 64 * width]`` features.
        in_chans: input channels (1 for Fashion-MNIST).
        shortcut: ``"A"`` (parameter-free, default) or ``"B"`` (1x1 conv + BN projection).
        width: channel multiplier on the base widths 16 / 32 / 64.
        classifier: ``"linear"`` or ``"cosine"`` (LDAM-DRW uses the cosine head).
    """

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        in_chans: int = 3,
        shortcut: str = "A",
        width: float = 1.0,
        classifier: str = "linear",
    ) -> None:
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise LongtailError(
                f"unknown shortcut {shortcut!r}: use 'A' (zero-pad) or 'B' (1x1 conv)"
            )
        if not width > 0:
            raise LongtailError(f"width={width} must be positive: use e.g. 1.0 (16/32/64 channels)")
        if in_chans < 1 or blocks_per_stage < 1:
            raise LongtailError(
                f"in_chans={in_chans} and blocks_per_stage={blocks_per_stage} must be >= 1: "
                "use 3 for RGB or 1 for grayscale inputs"
            )
        widths = [max(1, round(BASE_WIDTH * width * 2**i)) for i in range(3)]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        # The first block of a stage changes width and (after stage 1) halves the resolution.
        self.layer1 = _stage(widths[0], widths[0], blocks_per_stage, 1, shortcut)
        self.layer2 = _stage(widths[0], widths[1], blocks_per_stage, 2, shortcut)
        self.layer3 = _stage(widths[1], widths[2], blocks_per_stage, 2, shortcut)
        self._set_head(widths[-1], num_classes, classifier)
        for module in self.modules():
            # LDAM's _weights_init: kaiming_normal_ (fan_in) on every Conv2d and Linear weight.
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _init_classifier(self, head: nn.Module) -> None:
        if isinstance(head, nn.Linear):
            nn.init.kaiming_normal_(head.weight)
        elif isinstance(head, NormedLinear):
            head.reset_parameters()

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        return self.layer3(x)


def resnet20(
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    shortcut: str = "A",
    width: float = 1.0,
    classifier: str = "linear",
) -> ResNetCifar:
    """ResNet-20 (n = 3), 0.27M parameters with option A."""
    return ResNetCifar(3, num_classes, in_chans, shortcut, width, classifier)


def resnet32(
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    shortcut: str = "A",
    width: float = 1.0,
    classifier: str = "linear",
) -> ResNetCifar:
    """ResNet-32 (n = 5), 0.46M parameters with option A: the usual CIFAR-LT backbone."""
    return ResNetCifar(5, num_classes, in_chans, shortcut, width, classifier)


def resnet44(
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    shortcut: str = "A",
    width: float = 1.0,
    classifier: str = "linear",
) -> ResNetCifar:
    """ResNet-44 (n = 7), 0.66M parameters with option A."""
    return ResNetCifar(7, num_classes, in_chans, shortcut, width, classifier)


def resnet56(
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    shortcut: str = "A",
    width: float = 1.0,
    classifier: str = "linear",
) -> ResNetCifar:
    """ResNet-56 (n = 9), 0.85M parameters with option A."""
    return ResNetCifar(9, num_classes, in_chans, shortcut, width, classifier)


def resnet110(
    num_classes: int = 10,
    in_chans: int = 3,
    *,
    shortcut: str = "A",
    width: float = 1.0,
    classifier: str = "linear",
) -> ResNetCifar:
    """ResNet-110 (n = 18), 1.7M parameters with option A."""
    return ResNetCifar(18, num_classes, in_chans, shortcut, width, classifier)

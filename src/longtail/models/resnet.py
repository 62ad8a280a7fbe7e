"""ResNet-18/34/50/101/152 (He et al. 2016, Table 1) and ResNeXt-50 32x4d (Xie et al. 2017, Table 1)
in torchvision's layout, so its checkpoints load.

Four stages of 64 / 128 / 256 / 512 planes. The bottleneck is 1x1 -> 3x3 -> 1x1 with the stride on
the 3x3 (torchvision's "v1.5"); ResNeXt's 3x3 is a grouped convolution of ``groups`` paths of
``width_per_group`` channels each (stage 1: 32 x 4 = 128 wide, twice ResNet-50's 64). Shortcuts are identity, or 1x1 conv + BN (``downsample``)
where the shape changes. Two stems:

- ``stem="imagenet"``: 7x7 stride-2 conv + 3x3 stride-2 max-pool (total stride 32; for 224 px);
- ``stem="cifar"``: 3x3 stride-1 conv, no max-pool (total stride 8; for 32 px, as SimCLR/SupCon's
  CIFAR ResNets). Its ``conv1.weight`` is 3x3, so only the ImageNet stem loads torchvision's conv1.
"""

from __future__ import annotations

from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.models.backbone import Backbone

STEMS: tuple[str, ...] = ("imagenet", "cifar")


def _downsample(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
    )


class BasicBlock(nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1 x)))) + downsample(x))`` with two 3x3 convs."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 (reduce) -> 3x3 (stride here, v1.5; ``groups`` paths) -> 1x1 (expand x4), plus the
    shortcut. The inner width is ``planes * width_per_group / 64 * groups`` (torchvision's rule:
    ``planes`` for ResNet, 2 ``planes`` for ResNeXt 32x4d)."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(
    block: type[BasicBlock | Bottleneck],
    in_planes: int,
    planes: int,
    blocks: int,
    stride: int,
    paths: dict[str, int],
) -> nn.Sequential:
    """``blocks`` blocks, the first with ``stride``; ``paths``: ResNeXt's groups (bottleneck only)."""
    out_planes = planes * block.expansion

    def make(c_in: int, s: int) -> nn.Module:
        return block(c_in, planes, s, **paths) if paths else block(c_in, planes, s)

    return nn.Sequential(make(in_planes, stride), *(make(out_planes, 1) for _ in range(blocks - 1)))


class ResNet(Backbone):
    """ImageNet-family ResNet. ``forward_features``: ``[B, C_in, H, W] -> [B, 512 e, H/s, W/s]``.

    ``e`` is the block expansion (1 basic, 4 bottleneck) and ``s`` the total stride (32 for the
    ImageNet stem, 8 for the CIFAR stem).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``[2, 2, 2, 2]`` for ResNet-18.
        num_classes: logits; 0 makes ``forward`` return pooled features.
        in_chans: input channels.
        stem: ``"imagenet"`` or ``"cifar"`` (see the module docstring).
        zero_init_residual: start each block's last BN at weight 0, so every residual branch
            starts as the identity (Goyal et al. 2017, torchvision's flag of the same name).
        classifier: ``"linear"`` or ``"cosine"``.
        groups, width_per_group: ResNeXt's cardinality and path width (bottleneck only; 1 and 64
            are ResNet).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        zero_init_residual: bool = False,
        classifier: str = "linear",
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise LongtailError(
                f"unknown stem {stem!r}: use 'imagenet' (7x7 + max-pool) or 'cifar'"
            )
        if len(layers) != 4 or min(layers) < 1:
            raise LongtailError(f"layers={layers} must list four positive block counts")
        if in_chans < 1:
            raise LongtailError(f"in_chans={in_chans} must be >= 1: use 3 for RGB, 1 for grayscale")
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        )
        if (groups, width_per_group) != (1, 64) and block is not Bottleneck:
            raise LongtailError("groups / width_per_group need bottleneck blocks (ResNeXt)")
        paths = {"groups": groups, "width_per_group": width_per_group} if groups > 1 else {}
        e = block.expansion
        self.layer1 = _stage(block, 64, 64, layers[0], 1, paths)
        self.layer2 = _stage(block, 64 * e, 128, layers[1], 2, paths)
        self.layer3 = _stage(block, 128 * e, 256, layers[2], 2, paths)
        self.layer4 = _stage(block, 256 * e, 512, layers[3], 2, paths)
        self._set_head(512 * e, num_classes, classifier)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock | Bottleneck):
                    nn.init.zeros_(module.last_bn().weight)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet18(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]; 11,689,512 parameters with 1000 classes."""
    return ResNet(
        BasicBlock, [2, 2, 2, 2], num_classes, in_chans, stem, zero_init_residual, classifier
    )


def resnet34(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]; 21,797,672 parameters with 1000 classes."""
    return ResNet(
        BasicBlock, [3, 4, 6, 3], num_classes, in_chans, stem, zero_init_residual, classifier
    )


def resnet50(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3]; 25,557,032 parameters with 1000 classes."""
    return ResNet(
        Bottleneck, [3, 4, 6, 3], num_classes, in_chans, stem, zero_init_residual, classifier
    )


def resnet101(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3]; 44,549,160 parameters with 1000 classes."""
    return ResNet(
        Bottleneck, [3, 4, 23, 3], num_classes, in_chans, stem, zero_init_residual, classifier
    )


def resnet152(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3]; 60,192,808 parameters with 1000 classes
    (Places-LT's backbone in Liu et al. 2019 and Kang et al. 2020)."""
    return ResNet(
        Bottleneck, [3, 8, 36, 3], num_classes, in_chans, stem, zero_init_residual, classifier
    )


def resnext50_32x4d(
    num_classes: int = 1000,
    in_chans: int = 3,
    *,
    stem: str = "imagenet",
    zero_init_residual: bool = False,
    classifier: str = "linear",
) -> ResNet:
    """ResNeXt-50 32x4d: ResNet-50's stages with 32 grouped paths of width 4 in every 3x3;
    25,028,904 parameters with 1000 classes (Kang et al. 2020's ImageNet-LT backbone)."""
    return ResNet(
        Bottleneck, [3, 4, 6, 3], num_classes, in_chans, stem, zero_init_residual, classifier,
        groups=32, width_per_group=4,
    )  # fmt: skip

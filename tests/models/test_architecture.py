"""Architecture facts against independent references: parameter counts worked out from the layer
shapes, torchvision's published counts and key names, option-A shortcuts, and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.models import create_model, resnet18, resnet32, resnet50
from longtail.models.resnet import BasicBlock, ResNet
from longtail.models.resnet_cifar import CifarBasicBlock, PadShortcut


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k


def _bn(c: int) -> int:
    return 2 * c  # weight and bias; running stats are buffers, not parameters


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _cifar_resnet_count(n: int, classes: int, in_chans: int, shortcut: str, width: int) -> int:
    """He et al. 2016 Sec. 4.2, from the layer shapes."""
    widths = [16 * width, 32 * width, 64 * width]
    total = _conv(in_chans, widths[0], 3) + _bn(widths[0])
    c_in = widths[0]
    for w in widths:
        for _ in range(n):
            total += _conv(c_in, w, 3) + _bn(w) + _conv(w, w, 3) + _bn(w)
            if shortcut == "B" and c_in != w:
                total += _conv(c_in, w, 1) + _bn(w)
            c_in = w
    return total + widths[-1] * classes + classes


def test_resnet32_option_a_has_464154_parameters() -> None:
    by_hand = (
        (3 * 16 * 9 + 2 * 16)  # stem
        + 5 * (2 * 16 * 16 * 9 + 2 * 2 * 16)  # stage 1: 5 blocks of two 16->16 convs
        + (16 * 32 * 9 + 32 * 32 * 9 + 2 * 2 * 32)
        + 4 * (2 * 32 * 32 * 9 + 2 * 2 * 32)
        + (32 * 64 * 9 + 64 * 64 * 9 + 2 * 2 * 64)
        + 4 * (2 * 64 * 64 * 9 + 2 * 2 * 64)
        + (64 * 10 + 10)  # fc
    )
    assert by_hand == 464_154
    assert _count(resnet32(10)) == by_hand


@pytest.mark.parametrize(
    ("depth", "classes", "in_chans", "shortcut", "width"),
    [
        (20, 10, 3, "A", 1),
        (32, 100, 3, "A", 1),
        (32, 10, 1, "A", 1),
        (32, 10, 3, "B", 1),
        (44, 10, 3, "A", 2),
        (56, 10, 3, "B", 1),
        (110, 10, 3, "A", 1),
    ],
)
def test_cifar_resnet_parameter_counts(
    depth: int, classes: int, in_chans: int, shortcut: str, width: int
) -> None:
    model = create_model(
        f"resnet{depth}", classes, in_chans=in_chans, shortcut=shortcut, width=float(width)
    )
    n = (depth - 2) // 6
    assert _count(model) == _cifar_resnet_count(n, classes, in_chans, shortcut, width)


def test_cifar_resnet_published_sizes() -> None:
    # He et al. 2016 Table 6 (CIFAR-10): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M parameters.
    for depth, millions in [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)]:
        count = _count(create_model(f"resnet{depth}", 10))
        assert count / 1e6 == pytest.approx(millions, abs=0.005 if depth < 110 else 0.05)


def _imagenet_resnet_count(layers: list[int], bottleneck: bool, classes: int, stem: str) -> int:
    """torchvision's ResNet from its layer shapes: 64-channel stem, stages 64/128/256/512."""
    expansion = 4 if bottleneck else 1
    total = _conv(3, 64, 7 if stem == "imagenet" else 3) + _bn(64)
    c_in = 64
    for planes, depth in zip((64, 128, 256, 512), layers, strict=True):
        out = planes * expansion
        for i in range(depth):
            if bottleneck:
                total += _conv(c_in, planes, 1) + _conv(planes, planes, 3) + _conv(planes, out, 1)
                total += _bn(planes) * 2 + _bn(out)
            else:
                total += _conv(c_in, planes, 3) + _conv(planes, planes, 3) + _bn(planes) * 2
            if i == 0 and (planes != 64 or c_in != out):
                total += _conv(c_in, out, 1) + _bn(out)
            c_in = out
    return total + c_in * classes + classes


@pytest.mark.parametrize(
    ("name", "layers", "bottleneck", "published"),
    [
        ("resnet18", [2, 2, 2, 2], False, 11_689_512),
        ("resnet34", [3, 4, 6, 3], False, 21_797_672),
        ("resnet50", [3, 4, 6, 3], True, 25_557_032),
    ],
)
def test_imagenet_resnet_parameter_counts(
    name: str, layers: list[int], bottleneck: bool, published: int
) -> None:
    assert _imagenet_resnet_count(layers, bottleneck, 1000, "imagenet") == published
    assert _count(create_model(name, 1000)) == published
    cifar_stem = create_model(name, 10, stem="cifar")
    assert _count(cifar_stem) == _imagenet_resnet_count(layers, bottleneck, 10, "cifar")


@pytest.mark.parametrize(
    ("name", "published"),
    [("resnet101", 44_549_160), ("resnet152", 60_192_808), ("resnext50_32x4d", 25_028_904)],
)
def test_deeper_and_grouped_resnets_have_torchvision_sizes(name: str, published: int) -> None:
    """torchvision's parameter counts (its model docs): the deeper stages and ResNeXt's paths."""
    assert _count(create_model(name, 1000)) == published


def test_resnext_bottleneck_is_grouped_and_twice_as_wide() -> None:
    model = create_model("resnext50_32x4d", 1000)
    state = model.state_dict()
    assert state["layer1.0.conv1.weight"].shape == (128, 64, 1, 1)  # 32 paths x 4 channels
    assert state["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # grouped: 4 inputs a filter
    assert state["layer1.0.conv3.weight"].shape == (256, 128, 1, 1)
    assert state["layer4.0.conv2.weight"].shape == (1024, 32, 3, 3)
    assert model.layer4[0].conv2.groups == 32 and model.layer4[0].conv2.stride == (2, 2)
    with pytest.raises(LongtailError, match="need bottleneck blocks"):
        ResNet(BasicBlock, [2, 2, 2, 2], groups=32, width_per_group=4)


def test_resnet18_state_dict_follows_torchvision_names() -> None:
    expected: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{prefix}.{suffix}"] = (c,)
        expected[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    c_in = 64
    for stage, planes in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            expected[f"{prefix}.conv1.weight"] = (planes, c_in, 3, 3)
            bn(f"{prefix}.bn1", planes)
            expected[f"{prefix}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{prefix}.bn2", planes)
            if block == 0 and stage > 1:
                expected[f"{prefix}.downsample.0.weight"] = (planes, c_in, 1, 1)
                bn(f"{prefix}.downsample.1", planes)
            c_in = planes
    expected["fc.weight"] = (1000, 512)
    expected["fc.bias"] = (1000,)

    state = resnet18().state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == expected
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight"):
        assert key in state
    # A state dict in this layout loads strictly (what loading a torchvision checkpoint needs).
    resnet18().load_state_dict(state, strict=True)


def test_resnet50_bottleneck_layout() -> None:
    state = resnet50().state_dict()
    assert state["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
    assert state["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    # v1.5: the stride sits on the 3x3, so the 1x1 reduce keeps the resolution.
    model = resnet50()
    assert model.layer2[0].conv1.stride == (1, 1)
    assert model.layer2[0].conv2.stride == (2, 2)
    assert state["fc.weight"].shape == (1000, 2048)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, stride=2)(x)
    expected = torch.zeros(2, 32, 4, 4)
    for c in range(16):
        for i in range(4):
            for j in range(4):
                expected[:, 8 + c, i, j] = x[:, c, 2 * i, 2 * j]
    assert torch.equal(out, expected)
    block = CifarBasicBlock(16, 32, stride=2, shortcut="A")
    assert isinstance(block.downsample, PadShortcut)
    assert _count(block) == _conv(16, 32, 3) + _conv(32, 32, 3) + 2 * _bn(32)


@pytest.mark.parametrize(("size", "side"), [(28, 7), (32, 8), (64, 16)])
def test_cifar_resnet_feature_map_is_a_quarter_of_the_input(size: int, side: int) -> None:
    with torch.no_grad():
        features = resnet32(10).eval().forward_features(torch.randn(1, 3, size, size))
    assert features.shape == (1, 64, side, side)


def test_cifar_stem_keeps_resolution() -> None:
    model = resnet18(10, stem="cifar").eval()
    assert isinstance(model.maxpool, nn.Identity)
    assert model.conv1.weight.shape == (64, 3, 3, 3)
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_identity(name: str) -> None:
    model = create_model(name, 10, zero_init_residual=True)
    model.eval()
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            assert torch.count_nonzero(block.last_bn().weight) == 0
            if block.downsample is None:
                x = torch.rand(1, block.conv1.in_channels, 4, 4)  # non-negative, as after a ReLU
                with torch.no_grad():
                    assert torch.equal(block(x), x)


def test_initialisation_follows_the_reference_codes() -> None:
    torch.manual_seed(0)
    cifar = resnet32(10)
    # LDAM's kaiming_normal_ (fan_in): std sqrt(2 / (32 * 3 * 3)) for the 32->64 3x3 conv
    # (fan_out would give sqrt(2 / (64 * 3 * 3)), 30% smaller).
    weight = cifar.layer3[0].conv1.weight
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.03)
    # torchvision's kaiming_normal_(mode="fan_out"): std sqrt(2 / (64 * 7 * 7)) for the 3->64 stem.
    weight = resnet18(10).conv1.weight
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 49)), rel=0.03)
    for module in cifar.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))

"""The shared model interface, checked for every registered model (new models are tested free)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError
from longtail.models import Backbone, NormedLinear, create_model, list_models

MODELS = list_models()
NUM_CLASSES = 7


def _build(name: str, in_chans: int = 3, **kwargs: object) -> Backbone:
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES, in_chans=in_chans, **kwargs)


def test_registry_lists_the_families() -> None:
    expected = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}
    expected |= {"resnet18", "resnet34", "resnet50"}
    assert expected <= set(MODELS)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", MODELS)
def test_output_shapes_for_several_input_sizes(name: str, in_chans: int) -> None:
    model = _build(name, in_chans).eval()
    with torch.no_grad():
        for size in (28, 32, 64):
            x = torch.randn(2, in_chans, size, size)
            features = model.forward_features(x)
            assert features.dim() == 4
            assert features.shape[:2] == (2, model.num_features)
            logits = model(x)
            assert logits.shape == (2, NUM_CLASSES)
            assert torch.isfinite(logits).all()


def test_imagenet_resolution_for_one_small_case() -> None:
    model = _build("resnet18").eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, 224, 224))
    # 224 / 32 = 7: the standard ImageNet feature map.
    assert features.shape == (1, 512, 7, 7)


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_receives_a_gradient(name: str) -> None:
    model = _build(name).train()
    x = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(model(x), labels)
    assert torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_head_of_features_and_pre_logits_are_pooled(name: str) -> None:
    model = _build(name).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert torch.equal(logits, model.forward_head(features))
    assert pooled.shape == (3, model.num_features)
    # Global average pooling, written out: the mean over all spatial positions.
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
    fc = model.get_classifier()
    assert isinstance(fc, nn.Linear)
    torch.testing.assert_close(logits, pooled @ fc.weight.T + fc.bias)


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_changes_only_the_head(name: str) -> None:
    model = _build(name).train()
    with torch.no_grad():
        model(torch.randn(4, 3, 32, 32))  # moves the BN running statistics off their init
    before = {key: value.clone() for key, value in model.state_dict().items()}

    model.reset_classifier(5)
    after = model.state_dict()
    body_keys = {key for key in before if not key.startswith("fc.")}
    assert body_keys == {key for key in after if not key.startswith("fc.")}
    for key in body_keys:
        assert torch.equal(before[key], after[key]), key
    assert after["fc.weight"].shape == (5, model.num_features)
    assert model.num_classes == 5
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 5)

        model.reset_classifier(4, kind="cosine")
        assert isinstance(model.get_classifier(), NormedLinear)
        assert model(x).shape == (2, 4)

        model.reset_classifier(0)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert isinstance(model.get_classifier(), nn.Identity)
        assert torch.equal(model(x), pooled)
    for key in body_keys:
        assert torch.equal(before[key], model.state_dict()[key]), key


@pytest.mark.parametrize("name", MODELS)
def test_cosine_classifier_gives_cosines(name: str) -> None:
    model = _build(name, classifier="cosine").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    head = model.get_classifier()
    assert isinstance(head, NormedLinear)
    weight = head.weight
    expected = torch.stack(
        [
            torch.stack(
                [F.cosine_similarity(pooled[b], weight[c], dim=0) for c in range(NUM_CLASSES)]
            )
            for b in range(4)
        ]
    )
    torch.testing.assert_close(logits, expected)
    assert logits.abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_channels_last_matches_contiguous(name: str) -> None:
    model = _build(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        result = model(x.contiguous(memory_format=torch.channels_last))
    # a random deep net in eval mode gives logits in the hundreds (ResNet-152: ~300): float32
    # rounding in a different summation order is relative to that scale, not to each logit
    scale = max(1.0, float(reference.abs().max()))
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-4 * scale)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_new_head_follows_the_model_device_and_dtype(device: str) -> None:
    model = create_model("resnet20", 10).to(device=device, dtype=torch.float64)
    model.reset_classifier(3, kind="cosine")
    head = model.get_classifier()
    assert isinstance(head, NormedLinear)
    assert head.weight.device.type == device and head.weight.dtype == torch.float64
    x = torch.randn(2, 3, 32, 32, device=device, dtype=torch.float64)
    model(x).sum().backward()
    assert head.weight.grad is not None


def test_num_classes_zero_returns_pooled_features() -> None:
    model = create_model("resnet32", 0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 64)
    assert model.num_features == 64


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(LongtailError, match="unknown model 'resnet33'") as error:
        create_model("resnet33", 10)
    for name in MODELS:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet32", {"stem": "cifar"}, "unknown option"),
        ("resnet18", {"shortcut": "A"}, "unknown option"),
        ("resnet32", {"shortcut": "C"}, "unknown shortcut"),
        ("resnet32", {"width": -1.0}, "must be positive"),
        ("resnet32", {"width": "wide"}, "should be a float"),
        ("resnet18", {"stem": "tiny"}, "unknown stem"),
        ("resnet18", {"zero_init_residual": "yes"}, "should be a bool"),
        ("resnet50", {"classifier": "mlp"}, "unknown classifier kind"),
    ],
)
def test_bad_options_raise_longtail_error(
    name: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(LongtailError, match=message):
        create_model(name, 10, **kwargs)


@pytest.mark.parametrize(("num_classes", "in_chans"), [(-1, 3), (10, 0), (2.5, 3)])
def test_bad_sizes_raise_longtail_error(num_classes: object, in_chans: int) -> None:
    with pytest.raises(LongtailError):
        create_model("resnet20", num_classes, in_chans=in_chans)  # type: ignore[arg-type]


def test_numpy_integer_sizes_are_accepted() -> None:
    # Class counts often come out of numpy (len of a bincount): they must not be rejected.
    model = create_model("resnet20", np.int64(5), in_chans=np.int32(1))
    assert model.num_classes == 5 and model.conv1.in_channels == 1

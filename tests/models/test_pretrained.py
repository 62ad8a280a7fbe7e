"""``model.pretrained=FILE``: a torchvision-format state dict (tested with a saved random one:
no weights can be downloaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from longtail.errors import LongtailError
from longtail.models import create_model
from longtail.models.pretrained import load_pretrained


def _saved(tmp_path: Path, name: str = "resnet18", classes: int = 1000, wrap: str = "") -> Path:
    torch.manual_seed(1)
    state = create_model(name, classes).state_dict()
    if wrap == "ddp":
        state = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": state} if wrap == "state_dict" else state, path)
    return path


@pytest.mark.parametrize("wrap", ["", "state_dict", "ddp"])
def test_every_tensor_loads_when_the_classes_match(tmp_path: Path, wrap: str) -> None:
    path = _saved(tmp_path, wrap=wrap)
    source = torch.load(path, weights_only=True)
    source = source.get("state_dict", source)
    torch.manual_seed(2)
    model = create_model("resnet18", 1000)
    info = load_pretrained(model, path)
    assert info["classifier"] == "loaded" and info["tensors"] == len(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[f"module.{key}" if wrap == "ddp" else key])


def test_another_class_count_keeps_the_head_at_initialisation(tmp_path: Path) -> None:
    """Places-LT: ImageNet's backbone, a fresh 365-way head."""
    path = _saved(tmp_path)
    source = torch.load(path, weights_only=True)
    torch.manual_seed(2)
    model = create_model("resnet18", 365)
    head = model.fc.weight.detach().clone()
    assert load_pretrained(model, path)["classifier"] == "kept at initialisation"
    assert torch.equal(model.fc.weight, head)
    assert torch.equal(model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, source["bn1.running_var"])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (("resnet50", {}), "lacks .* the first layer1.0.conv3.weight"),
        (("resnet18", {"stem": "cifar"}), "gives conv1.weight the shape"),
    ],
)
def test_weights_of_another_architecture_are_one_line(
    tmp_path: Path, model: tuple[str, dict[str, str]], message: str
) -> None:
    path = _saved(tmp_path)
    with pytest.raises(LongtailError, match=message) as info:
        load_pretrained(create_model(model[0], 10, **model[1]), path)
    assert "\n" not in str(info.value) and "same architecture" in str(info.value)


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    model = create_model("resnet18", 10)
    with pytest.raises(LongtailError, match="does not exist"):
        load_pretrained(model, tmp_path / "none.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(LongtailError, match="not a readable state dict"):
        load_pretrained(model, tmp_path / "bad.pth")
    torch.save({"epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(LongtailError, match="holds no tensor dict"):
        load_pretrained(model, tmp_path / "other.pth")

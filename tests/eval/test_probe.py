"""Linear probe vs sklearn's LogisticRegression; feature extraction leaves the backbone untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.eval.probe import assert_unchanged, extract_features, linear_probe, snapshot
from longtail.models.backbone import Backbone


def _blobs(counts: list[int], seed: int, dim: int = 8) -> tuple[Tensor, Tensor]:
    """Overlapping Gaussian classes with a non-trivial scale per dimension (probe must standardise)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(counts), dim, generator=torch.Generator().manual_seed(0)) * 1.2
    scale = torch.linspace(0.5, 20.0, dim)
    xs, ys = [], []
    for c, n in enumerate(counts):
        xs.append((centres[c] + torch.randn(n, dim, generator=g)) * scale + 3.0)
        ys.append(torch.full((n,), c))
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("balanced", [False, True])
def test_probe_matches_sklearn_logistic_regression(balanced: bool) -> None:
    counts = [150, 60, 25, 15] if balanced else [80, 80, 80, 80]
    x_train, y_train = _blobs(counts, seed=1)
    x_test, y_test = _blobs([200] * 4, seed=2)
    wd = 1e-2
    out = linear_probe(
        x_train, y_train, x_test, y_test, num_classes=4, weight_decay=wd, balanced=balanced
    )
    mean = x_train.double().mean(0)
    std = x_train.double().std(0, unbiased=False)
    reference = LogisticRegression(
        C=1.0 / (wd * len(y_train)),
        solver="lbfgs",
        max_iter=5000,
        tol=1e-10,
        class_weight="balanced" if balanced else None,
    ).fit(((x_train.double() - mean) / std).numpy(), y_train.numpy())
    sk_preds = reference.predict(((x_test.double() - mean) / std).numpy())
    sk_acc = 100.0 * float(np.mean(sk_preds == y_test.numpy()))
    agree = float(np.mean(sk_preds == out["preds"].numpy()))
    assert agree >= 0.98
    assert abs(out["top1"] - sk_acc) <= 1.0
    assert 40.0 < out["top1"] < 99.0  # the problem is neither trivial nor hopeless
    np.testing.assert_allclose(out["weight"].numpy(), reference.coef_, rtol=0.05, atol=0.02)


def test_balanced_weighting_raises_rare_class_recall() -> None:
    x_train, y_train = _blobs([300, 300, 10], seed=3)
    x_test, y_test = _blobs([200, 200, 200], seed=4)
    plain = linear_probe(x_train, y_train, x_test, y_test, num_classes=3, balanced=False)
    fair = linear_probe(x_train, y_train, x_test, y_test, num_classes=3, balanced=True)
    assert fair["per_class_acc"][2] > plain["per_class_acc"][2]


def test_absent_test_class_gives_nan_and_top1_matches_preds() -> None:
    x_train, y_train = _blobs([50, 50, 50], seed=5)
    x_test, y_test = _blobs([40, 40], seed=6)
    out = linear_probe(x_train, y_train, x_test, y_test, num_classes=5)
    acc = out["per_class_acc"]
    assert acc.shape == (5,)
    assert torch.isnan(acc[2:]).all() and not torch.isnan(acc[:2]).any()
    assert out["top1"] == pytest.approx(100.0 * float((out["preds"] == y_test).double().mean()))


def test_probe_rejects_labels_beyond_num_classes() -> None:
    x, y = _blobs([10, 10, 10], seed=7)
    with pytest.raises(LongtailError, match="num_classes"):
        linear_probe(x, y, x, y, num_classes=2)


class _TinyNet(Backbone):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.frozen_bn = nn.BatchNorm2d(6)
        self._set_head(6, 4, "linear")

    def forward_features(self, x: Tensor) -> Tensor:
        return self.frozen_bn(torch.relu(self.bn(self.conv(x))))


def _to_float(x: Tensor) -> Tensor:
    return x.float() / 255.0 - 0.5


def test_extract_features_leaves_batchnorm_bit_identical_and_restores_modes() -> None:
    torch.manual_seed(0)
    model = _TinyNet()
    with torch.no_grad():  # non-trivial running stats so eval mode differs from train mode
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    model.train()
    model.frozen_bn.eval()
    reference = snapshot(model)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    feats = extract_features(model, images, batch_size=3, transform=_to_float)
    assert feats.shape == (10, 6) and feats.dtype == torch.float32 and not feats.is_inference()
    assert_unchanged(model, reference)
    assert model.training and model.bn.training and not model.frozen_bn.training
    model.eval()
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(_to_float(images)), pre_logits=True)
    torch.testing.assert_close(feats, expected)


def test_assert_unchanged_catches_a_train_mode_forward() -> None:
    model = _TinyNet().train()
    reference = snapshot(model)
    model(torch.randn(4, 3, 8, 8))  # updates BatchNorm running stats only
    with pytest.raises(LongtailError, match="running_mean"):
        assert_unchanged(model, reference)

"""SimSiam's projector and predictor: layer structure, shapes, the forward formula, bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.losses import SimSiamLoss
from longtail.models.ssl_heads import SimSiamPredictor, SimSiamProjector


def kinds(module: nn.Module) -> list[type]:
    return [type(layer) for layer in module.modules() if not isinstance(layer, nn.Sequential)][1:]


@pytest.mark.parametrize("num_layers", [2, 3])
def test_projector_structure(num_layers: int) -> None:
    head = SimSiamProjector(32, hidden_dim=24, out_dim=16, num_layers=num_layers)
    block = [nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert kinds(head) == block * (num_layers - 1) + [nn.Linear, nn.BatchNorm1d]
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in head.modules() if isinstance(m, nn.BatchNorm1d)]
    assert all(m.bias is None for m in linears)
    assert [(m.in_features, m.out_features) for m in linears] == (
        [(32, 24), (24, 16)] if num_layers == 2 else [(32, 24), (24, 24), (24, 16)]
    )
    assert all(m.affine for m in norms[:-1]) and not norms[-1].affine
    assert norms[-1].num_features == 16 and norms[-1].weight is None
    assert head(torch.randn(5, 32)).shape == (5, 16)


def test_projector_defaults_are_simsiam_cifar() -> None:
    head = SimSiamProjector(512)
    assert (head.num_layers, head.out_dim) == (2, 2048)
    assert head(torch.randn(4, 512)).shape == (4, 2048)


def test_predictor_structure_and_defaults() -> None:
    head = SimSiamPredictor()
    assert kinds(head) == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    first, last = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert (first.in_features, first.out_features, first.bias) == (2048, 512, None)
    assert (last.in_features, last.out_features) == (512, 2048) and last.bias is not None
    assert head(torch.randn(3, 2048)).shape == (3, 2048)


def batch_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """Training-mode BN from its definition: batch mean and biased variance, eps 1e-5."""
    out = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    return out if weight is None or bias is None else out * weight + bias


def test_forward_matches_the_formula_in_training_mode() -> None:
    torch.manual_seed(0)
    projector, predictor = SimSiamProjector(6, 10, 8).double(), SimSiamPredictor(8, 3).double()
    for m in [*projector.modules(), *predictor.modules()]:
        if isinstance(m, nn.BatchNorm1d) and m.affine:  # non-trivial gamma/beta
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -1.0, 1.0)
    x = torch.randn(7, 6, dtype=torch.float64)
    l1, bn1, _, l2, bn2 = projector.net
    hidden = batch_norm(x @ l1.weight.T, bn1.weight, bn1.bias).clamp_min(0)
    z = batch_norm(hidden @ l2.weight.T, None, None)
    torch.testing.assert_close(projector(x), z)
    m1, bnp, _, m2 = predictor.net
    p = batch_norm(z @ m1.weight.T, bnp.weight, bnp.bias).clamp_min(0) @ m2.weight.T + m2.bias
    torch.testing.assert_close(predictor(z), p)


def test_every_parameter_gets_a_gradient_through_the_simsiam_loss() -> None:
    torch.manual_seed(1)
    backbone = nn.Linear(12, 16)
    projector, predictor = SimSiamProjector(16, 32, 20, num_layers=3), SimSiamPredictor(20, 8)
    x1, x2 = torch.randn(6, 12), torch.randn(6, 12)
    z1, z2 = projector(backbone(x1)), projector(backbone(x2))
    SimSiamLoss()(predictor(z1), predictor(z2), z1, z2).backward()
    for module in [backbone, projector, predictor]:
        for name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_bad_arguments_are_one_line_longtail_errors() -> None:
    bad_calls = [
        lambda: SimSiamProjector(0),
        lambda: SimSiamProjector(16, hidden_dim=-1),
        lambda: SimSiamProjector(16, out_dim=2.5),  # type: ignore[arg-type]
        lambda: SimSiamProjector(16, num_layers=1),
        lambda: SimSiamProjector(16, num_layers=4),
        lambda: SimSiamProjector(True),
        lambda: SimSiamPredictor(0),
        lambda: SimSiamPredictor(16, hidden_dim=0),
        lambda: SimSiamPredictor("2048"),  # type: ignore[arg-type]
    ]
    for call in bad_calls:
        with pytest.raises(LongtailError) as info:
            call()
        assert "\n" not in str(info.value)

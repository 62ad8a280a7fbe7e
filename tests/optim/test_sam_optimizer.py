"""The SAM optimizer wrapper takes exactly the functional sam_step (SAM, ASAM, rwSAM)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.optim.sam import sam_step
from longtail.optim.sam_optimizer import SAM


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_wrapper_equals_sam_step(adaptive: bool, weighted: bool) -> None:
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    w = torch.linspace(0.2, 3.0, 16)
    a, b = _model(), _model()
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    opt_b = SAM(torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4),
                rho=0.5, adaptive=adaptive, model=b)  # fmt: skip

    def plain(m: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(m(x), y)

    def weighted_loss(m: nn.Module) -> torch.Tensor:
        return (w * nn.functional.cross_entropy(m(x), y, reduction="none")).mean()

    for _ in range(3):
        pa = (lambda: weighted_loss(a)) if weighted else (lambda: plain(a))
        la = sam_step(opt_a, pa, lambda: plain(a), rho=0.5, adaptive=adaptive, model=a)
        pb = (lambda: weighted_loss(b)) if weighted else None
        lb = opt_b.step(lambda: plain(b), perturb_closure=pb)
        assert torch.equal(la, lb)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    assert opt_b.param_groups is opt_b.base_optimizer.param_groups
    assert opt_b.state_dict()["state"].keys() == opt_a.state_dict()["state"].keys()


def test_wrapper_refuses_a_zero_radius() -> None:
    with pytest.raises(LongtailError, match="rho"):
        SAM(torch.optim.SGD(_model().parameters(), lr=0.1), rho=0.0)

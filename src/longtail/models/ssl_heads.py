"""SimSiam's projection and prediction MLPs (Chen & He, CVPR 2021, §3 and Appendix / Fig. 1).

Projector g: ``num_layers`` fully-connected layers, each followed by BN; ReLU after every BN but
the last, whose BN has no affine parameters (the paper: "Its output fc has no ReLU"; the code's
``BatchNorm1d(dim, affine=False)``). Predictor h: a bottleneck ``dim -> hidden -> dim`` with BN and
ReLU on the hidden layer only. Linears followed by BN carry no bias (BN's mean subtraction would
cancel it; the official code freezes that bias instead).

Settings: ImageNet, 3-layer projector 2048-d, predictor 2048 -> 512 -> 2048. CIFAR (SimSiam §4 /
Appendix, and the rwSAM code): 2-layer projector 2048-d, same predictor.
"""

from __future__ import annotations

from torch import Tensor, nn

from longtail.errors import LongtailError


def _check_dims(owner: str, **dims: int) -> None:
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LongtailError(
                f"{owner} {name}={value!r} must be a positive integer: pass e.g. {name}=2048"
            )


class SimSiamProjector(nn.Module):
    """SimSiam's projection MLP: ``[B, in_dim] -> [B, out_dim]``.

    ``num_layers - 1`` blocks Linear(no bias)-BN-ReLU of width ``hidden_dim``, then
    Linear(no bias)-BN(affine=False) to ``out_dim``. ``num_layers`` = 2 for CIFAR (SimSiam's CIFAR
    variant, Imbalanced-SSL / rwSAM) or 3 for ImageNet (SimSiam §3).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 2048, num_layers: int = 2
    ) -> None:
        super().__init__()
        _check_dims("SimSiamProjector", in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        if isinstance(num_layers, bool) or num_layers not in (2, 3):
            raise LongtailError(
                f"SimSiamProjector num_layers={num_layers!r} is not supported: use 2 (CIFAR) or"
                " 3 (ImageNet)"
            )
        self.in_dim, self.out_dim, self.num_layers = in_dim, out_dim, num_layers
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers - 1):
            layers += [
                nn.Linear(width, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            width = hidden_dim
        layers += [nn.Linear(width, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SimSiamPredictor(nn.Module):
    """SimSiam's prediction MLP h: ``[B, dim] -> [B, dim]`` through a ``hidden_dim`` bottleneck.

    Linear(no bias)-BN-ReLU-Linear(with bias); the output has no BN (SimSiam §3: "Its output fc
    does not have BN or ReLU"). Defaults 2048 -> 512 -> 2048 (SimSiam §3, also its CIFAR runs).
    """

    def __init__(self, dim: int = 2048, hidden_dim: int = 512) -> None:
        super().__init__()
        _check_dims("SimSiamPredictor", dim=dim, hidden_dim=hidden_dim)
        self.dim = dim
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

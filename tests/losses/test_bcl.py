"""BCL's loss against a loop written from its formula (Zhu et al. 2022, eq. 5-6), and its reductions."""

from __future__ import annotations

import math

import pytest
import torch

from longtail.losses import CONTRASTIVE_LOSSES
from longtail.losses.bcl import BCLLoss
from longtail.losses.contrastive import SupConLoss


def _loop(
    z: torch.Tensor,
    y: torch.Tensor,
    centers: torch.Tensor | None,
    tau: float,
    class_average: bool,
) -> float:
    """L = mean_i -1/|P(i)| sum_p log(exp(z_i.z_p/tau) / sum_k 1/|A_k(i)| sum_{a in A_k(i)} exp(.))."""
    unit = [v / v.norm() for v in z.double()]
    members = [(v, int(c)) for v, c in zip(unit, y, strict=True)]
    if centers is not None:
        members += [(c / c.norm(), k) for k, c in enumerate(centers.double())]
    losses = []
    for i, (zi, yi) in enumerate(members[: len(unit)]):
        others = [m for j, m in enumerate(members) if j != i]
        count: dict[int, int] = {}
        for _, c in others:
            count[c] = count.get(c, 0) + 1
        denominator = sum(
            math.exp(float(zi @ a) / tau) / (count[c] if class_average else 1) for a, c in others
        )
        positives = [a for a, c in others if c == yi]
        if not positives:
            continue
        terms = [math.log(math.exp(float(zi @ p) / tau) / denominator) for p in positives]
        losses.append(-sum(terms) / len(terms))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "classes", "tau"), [(8, 3, 0.07), (12, 4, 0.5), (6, 6, 0.2)])
@pytest.mark.parametrize("with_centers", [True, False])
@pytest.mark.parametrize("class_average", [True, False])
def test_matches_the_formula(
    dtype: torch.dtype, n: int, classes: int, tau: float, with_centers: bool, class_average: bool
) -> None:
    g = torch.Generator().manual_seed(n + classes)
    z = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = torch.randn(classes, 5, generator=g, dtype=dtype) if with_centers else None
    got = BCLLoss(classes, tau, class_average)(z, y, prototypes=centers)
    expected = _loop(z, y, centers, tau, class_average)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert got.item() == pytest.approx(expected, rel=tol, abs=tol)


@pytest.mark.parametrize("tau", [0.07, 0.3])
def test_without_centers_and_averaging_it_is_supcon(tau: float) -> None:
    g = torch.Generator().manual_seed(2)
    z, y = torch.randn(10, 4, generator=g), torch.randint(0, 3, (10,), generator=g)
    bcl = BCLLoss(3, tau, class_average=False)(z, y)
    assert torch.allclose(bcl, SupConLoss(tau)(z, y), atol=1e-6)


def test_degenerate_batches_are_defined() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    distinct = torch.arange(4)
    loss = BCLLoss(4)(z, distinct)  # no positive anywhere, no centers: 0 with a graph
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None and torch.all(z.grad == 0)
    one = BCLLoss(2)(torch.randn(1, 3), torch.tensor([1]), prototypes=torch.randn(2, 3))
    assert torch.isfinite(one)  # one view: its centre is its only positive
    same = torch.ones(3, 3)  # identical views and centre: every logit equal
    value = BCLLoss(1, 0.5)(same, torch.zeros(3, dtype=torch.long), prototypes=torch.ones(1, 3))
    # denominator: 1/3 * (2 views + centre) * e^2 = e^2; each positive e^2: loss 0
    assert value.item() == pytest.approx(0.0, abs=1e-6)


def test_gradients_reach_the_centres_and_permutation_changes_nothing() -> None:
    g = torch.Generator().manual_seed(5)
    z, y = torch.randn(9, 4, generator=g), torch.randint(0, 3, (9,), generator=g)
    centers = torch.randn(3, 4, generator=g, requires_grad=True)
    loss = BCLLoss(3)(z, y, prototypes=centers)
    loss.backward()
    assert centers.grad is not None and centers.grad.abs().sum() > 0
    order = torch.randperm(9, generator=g)
    again = BCLLoss(3)(z[order], y[order], prototypes=centers.detach())
    assert torch.allclose(loss.detach(), again, atol=1e-6)


def test_it_is_in_the_registry() -> None:
    assert CONTRASTIVE_LOSSES["bcl"] is BCLLoss

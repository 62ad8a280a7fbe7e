"""PSC and MPSC against brute-force loops, their reductions, gradients and edge cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from longtail.errors import LongtailError
from longtail.losses import MPSCLoss, PSCLoss
from losses.reference import central_difference, mpsc_loop, mpsc_weights

# the prototypes are parameters, so the losses carry a graph; float() on them is fine here
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

TAUS = [0.07, 0.1, 0.5, 1.0]
DTYPES = [torch.float32, torch.float64]
C, D = 5, 6
# a long-tailed batch with a class absent and singletons; one class only; a single sample
LABEL_PATTERNS = [[0, 0, 0, 0, 1, 1, 2, 4, 0, 1, 2], [3] * 4, [2]]


def tol(dtype: torch.dtype) -> dict[str, float]:
    return {"rel": 1e-10, "abs": 1e-10} if dtype == torch.float64 else {"rel": 2e-5, "abs": 2e-5}


def setup(
    loss: torch.nn.Module, n: int, dtype: torch.dtype, seed: int
) -> tuple[torch.nn.Module, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        loss.prototypes.copy_(torch.randn(loss.prototypes.shape, generator=g))
    dim = loss.prototypes.shape[-1]
    return loss.to(dtype), 2.0 * torch.randn(n, dim, generator=g, dtype=dtype)


@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_psc_matches_loop(tau: float, dtype: torch.dtype, exclude: bool) -> None:
    for seed, pattern in enumerate(LABEL_PATTERNS):
        labels = torch.tensor(pattern)
        loss, features = setup(PSCLoss(C, D, tau, exclude), len(pattern), dtype, seed)
        assert loss.prototypes.shape == (C, D)
        expected = mpsc_loop(features, labels, loss.prototypes[:, None], tau, exclude)
        got = loss(features, labels)
        assert got.dtype == dtype
        assert float(got) == pytest.approx(expected, **tol(dtype))


@pytest.mark.parametrize("num_prototypes", [1, 3])
@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_mpsc_matches_loop(
    tau: float, dtype: torch.dtype, exclude: bool, num_prototypes: int
) -> None:
    for seed, pattern in enumerate(LABEL_PATTERNS):
        labels = torch.tensor(pattern)
        loss, features = setup(
            MPSCLoss(C, D, num_prototypes, tau, exclude), len(pattern), dtype, seed
        )
        expected = mpsc_loop(features, labels, loss.prototypes, tau, exclude)
        assert float(loss(features, labels)) == pytest.approx(expected, **tol(dtype))


@pytest.mark.parametrize("tau", TAUS)
def test_standard_psc_is_cross_entropy_on_cosine_logits(tau: float) -> None:
    loss, features = setup(PSCLoss(C, D, tau, exclude_positive=False), 11, torch.float64, 0)
    labels = torch.tensor(LABEL_PATTERNS[0])
    logits = F.normalize(features, dim=1) @ F.normalize(loss.prototypes, dim=1).T / tau
    assert float(loss(features, labels)) == pytest.approx(
        float(F.cross_entropy(logits, labels)), rel=1e-12
    )


@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("tau", TAUS)
def test_mpsc_with_one_prototype_is_psc(tau: float, exclude: bool) -> None:
    psc, features = setup(PSCLoss(C, D, tau, exclude), 11, torch.float64, 1)
    mpsc = MPSCLoss(C, D, 1, tau, exclude).double()
    with torch.no_grad():
        mpsc.prototypes.copy_(psc.prototypes[:, None])
    labels = torch.tensor(LABEL_PATTERNS[0])
    assert float(mpsc(features, labels)) == pytest.approx(float(psc(features, labels)), rel=1e-12)


def test_gradcheck_psc_float64() -> None:
    loss, features = setup(PSCLoss(C, D, 0.1), 6, torch.float64, 3)
    labels = torch.tensor([0, 0, 1, 3, 3, 4])
    features.requires_grad_()
    prototypes = loss.prototypes.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, p: functional_call(loss, {"prototypes": p}, (f, labels)), (features, prototypes)
    )


def test_mpsc_gradient_treats_the_soft_assignment_as_constant() -> None:
    # w is detached, so autograd must equal the finite-difference gradient of the loop with w frozen
    tau = 0.5
    loss, features = setup(MPSCLoss(3, 3, num_prototypes=2, temperature=tau), 4, torch.float64, 4)
    labels = torch.tensor([0, 1, 1, 2])
    features.requires_grad_()
    loss(features, labels).backward()
    assert features.grad is not None and loss.prototypes.grad is not None
    w = mpsc_weights(features.detach(), labels, loss.prototypes.detach(), tau)
    protos = loss.prototypes.detach()
    feature_fd = central_difference(
        lambda f: mpsc_loop(f, labels, protos, tau, weights=w), features
    )
    proto_fd = central_difference(
        lambda p: mpsc_loop(features.detach(), labels, p, tau, weights=w), protos
    )
    assert features.grad.reshape(-1).tolist() == pytest.approx(feature_fd, abs=1e-7)
    assert loss.prototypes.grad.reshape(-1).tolist() == pytest.approx(proto_fd, abs=1e-7)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 10_000), num_prototypes=st.integers(1, 3))
def test_batch_permutation_invariance(seed: int, num_prototypes: int) -> None:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (9,), generator=g)
    perm = torch.randperm(9, generator=g)
    for loss in [PSCLoss(C, D), MPSCLoss(C, D, num_prototypes)]:
        loss, features = setup(loss, 9, torch.float64, seed)
        before, after = loss(features, labels), loss(features[perm], labels[perm])
        assert float(after) == pytest.approx(float(before), rel=1e-12)


def test_refs_are_ignored_and_no_nan_for_odd_inputs() -> None:
    loss, features = setup(PSCLoss(C, D, 0.07), 4, torch.float32, 5)
    labels = torch.tensor([0, 1, 1, 4])
    refs = {"ref_features": torch.randn(7, D), "ref_labels": torch.zeros(7, dtype=torch.long)}
    assert float(loss(features, labels, **refs, self_offset=None)) == float(loss(features, labels))
    odd = torch.cat([1e4 * features[:2], torch.zeros(1, D), 1e-4 * features[3:]]).requires_grad_()
    for candidate in [loss, MPSCLoss(C, D, 3, 0.07)]:
        value = candidate(odd, labels)
        value.backward()
        assert torch.isfinite(value) and odd.grad is not None and torch.isfinite(odd.grad).all()
        odd.grad = None
    half = features.to(torch.bfloat16)
    got = loss(half, labels)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(
        mpsc_loop(half, labels, loss.prototypes.detach()[:, None], 0.07), rel=1e-4, abs=1e-4
    )


def test_user_errors_are_one_line_longtail_errors() -> None:
    loss = PSCLoss(C, D)
    bad_calls = [
        lambda: loss(torch.randn(3, D + 1), torch.tensor([0, 1, 2])),
        lambda: loss(torch.randn(3, D), torch.tensor([0, 1, C])),
        lambda: loss(torch.randn(3, D), torch.tensor([0, 1])),
        lambda: PSCLoss(1, D),
        lambda: MPSCLoss(C, D, num_prototypes=0),
        lambda: PSCLoss(C, D, temperature=-1.0),
    ]
    for call in bad_calls:
        with pytest.raises(LongtailError) as info:
            call()
        assert "\n" not in str(info.value)

"""Classification losses against loops from their papers' equations, reductions and edge cases."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from longtail.errors import LongtailError
from longtail.losses import (
    CLASSIFICATION_LOSSES,
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    drw_weights,
    ldam_margins,
    logit_adjust_posthoc,
)
from losses import reference_classification as ref

# CIFAR-10-LT at imbalance 100 (LDAM-DRW's subset): n_c = floor(5000 * 100^(-c/9))
CIFAR10_LT = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
C = len(CIFAR10_LT)
DTYPES = [torch.float64, torch.float32]
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-5}  # float32 buffers bound the float64 case
DRW_WEIGHTS = ref.effective_number_weights(CIFAR10_LT, 0.9999)


def batch(n: int, seed: int, dtype: torch.dtype, cosine: bool = False) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.rand(n, C, generator=g) * 2 - 1 if cosine else torch.randn(n, C, generator=g) * 2
    labels = torch.randint(0, C, (n,), generator=g)
    return logits.to(dtype), labels


# (name, module factory, reference loop over (rows, labels), cosine logits?)
CASES: list[tuple[str, Callable[[], nn.Module], Callable[[ref.Rows, list[int]], float], bool]] = [
    ("focal g=1", lambda: FocalLoss(1.0), lambda z, y: ref.focal_loop(z, y, 1.0), False),
    ("focal g=2", lambda: FocalLoss(2.0), lambda z, y: ref.focal_loop(z, y, 2.0), False),
    (
        "focal g=0.5 weighted",
        lambda: FocalLoss(0.5, weight=DRW_WEIGHTS),
        lambda z, y: ref.focal_loop(z, y, 0.5, DRW_WEIGHTS),
        False,
    ),
    *[
        (
            f"cb {kind} b={beta}",
            lambda kind=kind, beta=beta: ClassBalancedLoss(CIFAR10_LT, beta, kind, gamma=2.0),
            lambda z, y, kind=kind, beta=beta: ref.class_balanced_loop(
                z, y, CIFAR10_LT, beta, kind, 2.0
            ),
            False,
        )
        for kind in ("softmax", "sigmoid", "focal")
        for beta in (0.999, 0.9999)
    ],
    (
        "ldam",
        lambda: LDAMLoss(CIFAR10_LT),
        lambda z, y: ref.ldam_loop(z, y, CIFAR10_LT, 0.5, 30.0),
        True,
    ),
    (
        "ldam drw s=10",
        lambda: LDAMLoss(CIFAR10_LT, 0.3, 10.0, weight=DRW_WEIGHTS),
        lambda z, y: ref.ldam_loop(z, y, CIFAR10_LT, 0.3, 10.0, DRW_WEIGHTS),
        True,
    ),
    *[
        (
            f"logit adjusted tau={tau}",
            lambda tau=tau: LogitAdjustedLoss(CIFAR10_LT, tau),
            lambda z, y, tau=tau: ref.logit_adjusted_loop(z, y, CIFAR10_LT, tau),
            False,
        )
        for tau in (0.5, 1.0, 2.0)
    ],
    (
        "balanced softmax",
        lambda: BalancedSoftmaxLoss(CIFAR10_LT),
        lambda z, y: ref.balanced_softmax_loop(z, y, CIFAR10_LT),
        False,
    ),
]
CASE_IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 7, 64])
@pytest.mark.parametrize(("name", "make", "loop", "cosine"), CASES, ids=CASE_IDS)
def test_matches_reference_loop(
    name: str,
    make: Callable[[], nn.Module],
    loop: Callable[[ref.Rows, list[int]], float],
    cosine: bool,
    n: int,
    dtype: torch.dtype,
) -> None:
    logits, labels = batch(n, seed=n, dtype=dtype, cosine=cosine)
    got = make()(logits, labels)
    assert got.dtype == dtype and got.ndim == 0
    expected = loop(ref.rows(logits), labels.tolist())
    assert float(got) == pytest.approx(expected, rel=TOLERANCE[dtype], abs=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reductions_to_cross_entropy(dtype: torch.dtype) -> None:
    logits, labels = batch(50, seed=3, dtype=dtype)
    ce = F.cross_entropy(logits, labels)
    w = torch.tensor(DRW_WEIGHTS, dtype=dtype)
    torch.testing.assert_close(FocalLoss(0.0)(logits, labels), ce)
    torch.testing.assert_close(
        FocalLoss(0.0, weight=w)(logits, labels), F.cross_entropy(logits, labels, weight=w)
    )
    torch.testing.assert_close(ClassBalancedLoss(CIFAR10_LT, 0.0, "softmax")(logits, labels), ce)
    torch.testing.assert_close(LogitAdjustedLoss(CIFAR10_LT, 0.0)(logits, labels), ce)
    torch.testing.assert_close(BalancedSoftmaxLoss([37] * C)(logits, labels), ce)
    ldam = LDAMLoss(CIFAR10_LT, max_margin=0.0, s=7.0)
    torch.testing.assert_close(ldam(logits, labels), F.cross_entropy(7.0 * logits, labels))
    ldam.set_weight(w)
    torch.testing.assert_close(
        ldam(logits, labels), F.cross_entropy(7.0 * logits, labels, weight=w)
    )
    # sigmoid CB at beta 0: plain one-vs-all BCE, summed over classes, averaged over the batch
    # (Cui et al. divide by the number of positive targets, which is N)
    bce = F.binary_cross_entropy_with_logits(
        logits, F.one_hot(labels, C).to(dtype), reduction="sum"
    ) / len(labels)
    torch.testing.assert_close(ClassBalancedLoss(CIFAR10_LT, 0.0, "sigmoid")(logits, labels), bce)
    torch.testing.assert_close(
        ClassBalancedLoss(CIFAR10_LT, 0.0, "focal", gamma=0.0)(logits, labels), bce
    )


def test_ldam_margins_on_cifar10_lt() -> None:
    margins = ldam_margins(CIFAR10_LT, 0.5)
    expected = [0.5 * (50 / n) ** 0.25 for n in CIFAR10_LT]  # max 0.5 at the rarest class (50)
    assert margins.tolist() == pytest.approx(expected, rel=1e-6)
    assert float(margins.max()) == pytest.approx(0.5) and int(margins.argmax()) == C - 1
    assert float(margins[0]) == pytest.approx(0.5 / 10**0.5, rel=1e-6)  # (50/5000)^(1/4)
    torch.testing.assert_close(LDAMLoss(CIFAR10_LT).margins, margins)


def test_ldam_set_weight_switches_and_resumes() -> None:
    logits, labels = batch(32, seed=5, dtype=torch.float64, cosine=True)
    loss = LDAMLoss(CIFAR10_LT)
    plain = float(loss(logits, labels))
    weights = drw_weights(CIFAR10_LT, epoch=160, start_epoch=160)
    loss.set_weight(weights)
    weighted = float(loss(logits, labels))
    assert weighted == pytest.approx(
        ref.ldam_loop(ref.rows(logits), labels.tolist(), CIFAR10_LT, 0.5, 30.0, DRW_WEIGHTS),
        rel=1e-6,
    )
    restored = LDAMLoss(CIFAR10_LT)
    restored.load_state_dict(loss.state_dict())  # a checkpoint taken after the switch
    assert float(restored(logits, labels)) == weighted
    loss.set_weight(None)
    assert float(loss(logits, labels)) == plain


def test_buffers_in_state_dict_and_move_with_to() -> None:
    expected = {
        "class_balanced": ({"weights"}, ClassBalancedLoss(CIFAR10_LT)),
        "ldam": ({"margins", "weight"}, LDAMLoss(CIFAR10_LT)),
        "logit_adjusted": ({"log_prior"}, LogitAdjustedLoss(CIFAR10_LT)),
        "balanced_softmax": ({"log_prior"}, BalancedSoftmaxLoss(CIFAR10_LT)),
        "focal": ({"weight"}, FocalLoss(weight=DRW_WEIGHTS)),
    }
    for keys, loss in expected.values():
        assert set(loss.state_dict()) == keys
        moved = loss.to("meta")  # a device every machine has: shows buffers follow .to()
        assert all(b.device.type == "meta" for b in moved.buffers())
        assert len(list(moved.buffers())) == len(keys)
    assert set(FocalLoss().state_dict()) == set()


def all_losses(counts: list[int]) -> dict[str, nn.Module]:
    return {
        "focal": FocalLoss(0.5),
        "cb softmax": ClassBalancedLoss(counts, 0.9999, "softmax"),
        "cb sigmoid": ClassBalancedLoss(counts, 0.9999, "sigmoid"),
        "cb focal": ClassBalancedLoss(counts, 0.9999, "focal", gamma=0.5),
        "ldam": LDAMLoss(counts),
        "ldam drw": LDAMLoss(counts, weight=drw_weights(counts, 1, 0)),
        "logit adjusted": LogitAdjustedLoss(counts, 2.0),
        "balanced softmax": BalancedSoftmaxLoss(counts),
    }


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_gradients_finite_even_for_saturated_logits(scale: float) -> None:
    # at scale 1e3 every softmax is one-hot in float32: p_t = 1 exactly for the correct rows
    logits, labels = batch(40, seed=9, dtype=torch.float32)
    logits = logits * scale
    logits[:20] = logits[:20].scatter(1, labels[:20, None], 2 * scale)  # confident and right
    for name, loss in all_losses(CIFAR10_LT).items():
        x = logits.clone().requires_grad_()
        value = loss(x, labels)
        value.backward()
        assert torch.isfinite(value), name
        assert x.grad is not None and torch.isfinite(x.grad).all(), name


def test_absent_class_gives_finite_loss_and_no_pull() -> None:
    counts = [500, 0, 120, 30, 0, 5]
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(30, len(counts), generator=g, dtype=torch.float64)
    present = torch.tensor([0, 2, 3, 5])
    labels = present[torch.randint(0, 4, (30,), generator=g)]
    stray = labels.clone()
    stray[:3] = torch.tensor([1, 4, 1])  # labels of classes the counts say do not exist
    for name, loss in all_losses(counts).items():
        for y in (labels, stray):
            x = logits.clone().requires_grad_()
            value = loss(x, y)
            value.backward()
            assert torch.isfinite(value), name
            assert x.grad is not None and torch.isfinite(x.grad).all(), name
    # the prior losses leave absent classes out of the softmax: no probability, no gradient
    for loss in (LogitAdjustedLoss(counts, 1.0), BalancedSoftmaxLoss(counts)):
        x = logits.clone().requires_grad_()
        loss(x, labels).backward()
        assert x.grad is not None and float(x.grad[:, [1, 4]].abs().max()) < 1e-300
    assert ldam_margins(counts).tolist() == pytest.approx(
        ref.ldam_margin_list(counts, 0.5)
    )  # absent: margin 0, the max over present classes is 0.5 at n = 5
    weights = ClassBalancedLoss(counts, 0.99).weights
    assert weights[[1, 4]].tolist() == [0.0, 0.0]


def test_posthoc_adjustment() -> None:
    logits, _ = batch(16, seed=4, dtype=torch.float64)
    for tau in (0.0, 0.5, 1.0):
        got = logit_adjust_posthoc(logits, CIFAR10_LT, tau)
        prior = [math.log(n / sum(CIFAR10_LT)) for n in CIFAR10_LT]
        expected = [
            [v - tau * p for v, p in zip(row, prior, strict=True)] for row in ref.rows(logits)
        ]
        torch.testing.assert_close(
            got, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-6
        )
    counts = [100, 0, 10]
    three = torch.tensor([[0.0, 50.0, 0.0], [1.0, 2.0, 3.0]])
    adjusted = logit_adjust_posthoc(three, counts, 1.0)
    assert torch.isfinite(adjusted).all() and not (adjusted.argmax(1) == 1).any()
    assert torch.equal(logit_adjust_posthoc(three, counts, 0.0), three)


@settings(deadline=None, max_examples=10)
@given(seed=st.integers(0, 2**16), factor=st.sampled_from([2, 3, 10]))
def test_invariances(seed: int, factor: int) -> None:
    logits, labels = batch(12, seed=seed, dtype=torch.float64, cosine=True)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(seed))
    scaled = [n * factor for n in CIFAR10_LT]
    for name, loss in all_losses(CIFAR10_LT).items():
        value = loss(logits, labels)
        torch.testing.assert_close(loss(logits[perm], labels[perm]), value, msg=name)
    # losses that use only the class frequencies (not their size) ignore a common factor
    for make in (
        lambda c: LDAMLoss(c),
        lambda c: LogitAdjustedLoss(c, 1.5),
        lambda c: BalancedSoftmaxLoss(c),
    ):
        torch.testing.assert_close(make(scaled)(logits, labels), make(CIFAR10_LT)(logits, labels))
    # a constant added to every logit of a row does not change a softmax loss
    shift = torch.randn(12, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for loss in (FocalLoss(2.0), LogitAdjustedLoss(CIFAR10_LT), BalancedSoftmaxLoss(CIFAR10_LT)):
        torch.testing.assert_close(loss(logits + shift, labels), loss(logits, labels))


def test_registry_builds_every_loss() -> None:
    logits, labels = batch(8, seed=1, dtype=torch.float32)
    assert set(CLASSIFICATION_LOSSES) >= {
        "focal",
        "class_balanced",
        "ldam",
        "logit_adjusted",
        "balanced_softmax",
    }
    for name, cls in CLASSIFICATION_LOSSES.items():
        loss = cls() if name in ("ce", "focal") else cls(CIFAR10_LT)
        value = loss(logits, labels)
        assert value.ndim == 0 and torch.isfinite(value), name


BAD_ARGS: list[tuple[Callable[[], Any], str]] = [
    (lambda: LDAMLoss([10, -1, 3]), "class_counts"),
    (lambda: LogitAdjustedLoss([0, 0]), "class_counts"),
    (lambda: BalancedSoftmaxLoss([]), "class_counts"),
    (lambda: ClassBalancedLoss([3, 2], beta=1.0), "beta"),
    (lambda: ClassBalancedLoss([3, 2], beta=-0.1), "beta"),
    (lambda: drw_weights([3, 2], 5, 1, beta=1.5), "beta"),
    (lambda: ClassBalancedLoss([3, 2], loss_type="hinge"), "loss_type"),  # type: ignore[arg-type]
    (lambda: ClassBalancedLoss([3, 2], gamma=-1.0), "gamma"),
    (lambda: FocalLoss(gamma=-0.5), "gamma"),
    (lambda: LDAMLoss([3, 2], s=0.0), "scale"),
    (lambda: LDAMLoss([3, 2], max_margin=-0.1), "max_margin"),
    (lambda: LDAMLoss([3, 2], weight=[1.0, 2.0, 3.0]), "weight"),
    (lambda: LDAMLoss([3, 2]).set_weight([1.0, -1.0]), "weight"),
    (lambda: LogitAdjustedLoss([3, 2], tau=-1.0), "tau"),
    (lambda: LogitAdjustedLoss([3, 2])(torch.zeros(4, 3), torch.zeros(4).long()), "logits"),
    (lambda: LDAMLoss([3, 2, 1])(torch.zeros(4, 2), torch.zeros(4).long()), "logits"),
    (lambda: ClassBalancedLoss([3, 2])(torch.zeros(4), torch.zeros(4).long()), "logits"),
    (lambda: FocalLoss(weight=[1.0, 2.0])(torch.zeros(4, 3), torch.zeros(4).long()), "logits"),
    (lambda: FocalLoss()(torch.zeros(4, 3), torch.zeros(3).long()), "labels"),
    (lambda: logit_adjust_posthoc(torch.zeros(4, 3), [3, 2]), "logits"),
]


@pytest.mark.parametrize(("call", "word"), BAD_ARGS)
def test_bad_arguments_raise_one_line(call: Callable[[], Any], word: str) -> None:
    with pytest.raises(LongtailError, match=word) as info:
        call()
    assert "\n" not in str(info.value)


def test_drw_weights_switch_exactly_at_start_epoch() -> None:
    for epoch in (0, 100, 159):
        assert drw_weights(CIFAR10_LT, epoch, start_epoch=160) is None
    for epoch in (160, 161, 199):
        weights = drw_weights(CIFAR10_LT, epoch, start_epoch=160)
        assert weights is not None and weights.dtype == torch.float32
        assert weights.tolist() == pytest.approx(DRW_WEIGHTS, rel=1e-6)
    with pytest.raises(LongtailError, match="epoch"):
        drw_weights(CIFAR10_LT, -1, 160)

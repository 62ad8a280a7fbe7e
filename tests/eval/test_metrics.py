"""Confusion matrix, per-class accuracy and top-1 against loops, sklearn and direct counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from longtail.errors import LongtailError
from longtail.eval import confusion_matrix, per_class_accuracy, top1


def random_pair(n: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize(("n", "c"), [(1, 1), (50, 3), (1000, 10), (300, 100)])
def test_confusion_matrix_matches_python_loop(n: int, c: int) -> None:
    preds, targets = random_pair(n, c, seed=n + c)
    expected = [[0] * c for _ in range(c)]
    for p, t in zip(preds.tolist(), targets.tolist(), strict=True):
        expected[t][p] += 1
    cm = confusion_matrix(preds, targets, c)
    assert cm.dtype == torch.int64
    assert cm.shape == (c, c)
    assert cm.tolist() == expected


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_confusion_matrix_matches_sklearn_with_absent_classes(dtype: torch.dtype) -> None:
    # Classes 7..9 never occur in either tensor: sklearn with labels=range(C) still gives them rows.
    preds, targets = random_pair(400, 7, seed=3)
    cm = confusion_matrix(preds.to(dtype), targets.to(dtype), 10)
    expected = sk_confusion_matrix(targets.numpy(), preds.numpy(), labels=list(range(10)))
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_confusion_matrix_drops_out_of_range_pairs_so_the_total_shows_them() -> None:
    preds = torch.tensor([0, 1, 5, 2, -1])
    targets = torch.tensor([0, 1, 1, 9, 2])
    cm = confusion_matrix(preds, targets, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    assert int(cm.sum()) == 2


@pytest.mark.parametrize(
    ("preds", "targets", "num_classes"),
    [
        (torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 2),
        (torch.zeros(3), torch.zeros(3, dtype=torch.long), 2),
        (torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 0),
    ],
)
def test_confusion_matrix_rejects_bad_arguments(
    preds: torch.Tensor, targets: torch.Tensor, num_classes: int
) -> None:
    with pytest.raises(LongtailError):
        confusion_matrix(preds, targets, num_classes)


def test_per_class_accuracy_is_recall_and_nan_for_absent_class() -> None:
    targets = torch.tensor([0, 0, 0, 0, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 2, 2, 0, 2])
    acc = per_class_accuracy(confusion_matrix(preds, targets, 3))
    assert acc.dtype == torch.float64
    assert acc[0].item() == pytest.approx(2 / 4)
    assert math.isnan(acc[1].item())  # class 1 is predicted once but never a target
    assert acc[2].item() == pytest.approx(2 / 3)


def test_per_class_accuracy_matches_loop_over_samples() -> None:
    preds, targets = random_pair(500, 12, seed=7)
    acc = per_class_accuracy(confusion_matrix(preds, targets, 12)).tolist()
    for c in range(12):
        mask = targets == c
        expected = (preds[mask] == c).sum().item() / mask.sum().item()
        assert acc[c] == pytest.approx(expected, abs=1e-12)


def test_top1_is_fraction_of_correct_samples() -> None:
    preds, targets = random_pair(777, 5, seed=11)
    expected = sum(p == t for p, t in zip(preds.tolist(), targets.tolist(), strict=True)) / 777
    assert top1(confusion_matrix(preds, targets, 5)) == pytest.approx(expected, abs=1e-15)


def test_top1_of_empty_matrix_raises() -> None:
    empty = torch.empty(0, dtype=torch.long)
    with pytest.raises(LongtailError, match="0 samples"):
        top1(confusion_matrix(empty, empty, 4))


def test_non_square_matrix_raises() -> None:
    with pytest.raises(LongtailError, match="square"):
        per_class_accuracy(torch.zeros(3, 4, dtype=torch.long))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    num_classes=st.integers(min_value=1, max_value=8),
    n=st.integers(min_value=0, max_value=60),
)
def test_per_class_accuracy_invariant_to_sample_permutation(
    data: st.DataObject, num_classes: int, n: int
) -> None:
    ids = st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n)
    preds = torch.tensor(data.draw(ids), dtype=torch.long)
    targets = torch.tensor(data.draw(ids), dtype=torch.long)
    perm = torch.tensor(data.draw(st.permutations(range(n))), dtype=torch.long)
    before = per_class_accuracy(confusion_matrix(preds, targets, num_classes))
    after = per_class_accuracy(confusion_matrix(preds[perm], targets[perm], num_classes))
    torch.testing.assert_close(before, after, equal_nan=True, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_confusion_matrix_on_cuda_needs_no_host_sync() -> None:
    preds, targets = random_pair(10_000, 100, seed=5)
    expected = confusion_matrix(preds, targets, 100)
    preds, targets = preds.to("cuda"), targets.to("cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        cm = confusion_matrix(preds, targets, 100)
        acc = per_class_accuracy(cm)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert cm.device.type == "cuda" and acc.device.type == "cuda"
    assert torch.equal(cm.cpu(), expected)

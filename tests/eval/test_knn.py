"""Weighted kNN vs a brute-force loop over the formula."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from longtail.errors import LongtailError
from longtail.eval.knn import knn_predict


def _brute_force(
    train: Tensor, labels: Tensor, test: Tensor, num_classes: int, k: int, tau: float
) -> list[int]:
    preds = []
    for q in test.tolist():
        sims = []
        for j, x in enumerate(train.tolist()):
            dot = sum(a * b for a, b in zip(q, x, strict=True))
            norm = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x))
            sims.append((dot / norm, j))
        sims.sort(key=lambda t: -t[0])
        scores = [0.0] * num_classes
        for s, j in sims[: min(k, len(sims))]:
            scores[int(labels[j])] += math.exp(s / tau)
        preds.append(max(range(num_classes), key=lambda c: (scores[c], -c)))
    return preds


@pytest.mark.parametrize(("k", "chunk"), [(1, 7), (5, 3), (20, 100), (500, 4)])
def test_knn_matches_brute_force(k: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(k)
    train = torch.randn(60, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (60,), generator=g)
    test = torch.randn(25, 5, generator=g, dtype=torch.float64)
    # num_classes 6 > labels seen: classes 4 and 5 are absent from the training set
    preds = knn_predict(train, labels, test, num_classes=6, k=k, temperature=0.1, chunk=chunk)
    assert preds.dtype == torch.int64 and preds.shape == (25,)
    assert preds.tolist() == _brute_force(train.float(), labels, test.float(), 6, k, 0.1)
    assert int(preds.max()) < 4


def test_k_beyond_train_set_is_clipped_and_votes_are_weighted() -> None:
    # two far-but-many class-0 points vs one very close class-1 point; k=50 > N=3
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0]])
    labels = torch.tensor([1, 0, 0])
    test = torch.tensor([[1.0, 0.02]])
    assert knn_predict(train, labels, test, num_classes=2, k=50, temperature=0.07).item() == 1
    assert knn_predict(train, labels, test, num_classes=2, k=50, temperature=100.0).item() == 0


def test_knn_rejects_labels_beyond_num_classes_and_handles_empty_test() -> None:
    train, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 3, 4])
    with pytest.raises(LongtailError, match="num_classes"):
        knn_predict(train, labels, torch.randn(2, 3), num_classes=4)
    assert knn_predict(train, labels, torch.randn(0, 3), num_classes=5).shape == (0,)

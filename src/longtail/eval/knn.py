"""Weighted k-nearest-neighbour classifier on frozen features (InstDisc, Wu et al. 2018; DINO)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.errors import LongtailError


def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> Tensor:
    """Cosine-similarity kNN with weights ``exp(s / tau)``, as in InstDisc and DINO's ``knn_classifier``.

    For a test feature ``q``, let ``s_j = cos(q, x_j)`` and ``N_k(q)`` the k training rows with the
    largest ``s_j``. The score of class c is ``sum_{j in N_k(q)} [y_j = c] exp(s_j / tau)`` and the
    prediction its argmax (ties to the lower class id).

    Args:
        train_feats: ``[N, F]``; train_labels: integer ``[N]`` in ``[0, num_classes)``.
        test_feats: ``[M, F]`` on the same device.
        num_classes: K, explicit (never inferred from the labels; classes absent from the training
            set simply get score 0).
        k: neighbours; clipped to N when the training set is smaller.
        temperature: tau (DINO uses 0.07, InstDisc 0.07 too).
        chunk: test rows per similarity block, bounding memory to ``chunk * N`` floats.

    Returns:
        int64 ``[M]`` predicted class ids on the features' device.
    """
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise LongtailError(
            f"features {tuple(train_feats.shape)} / {tuple(test_feats.shape)}: pass [N, F] and [M, F]"
        )
    if train_labels.shape != train_feats.shape[:1]:
        raise LongtailError(
            f"train_labels {tuple(train_labels.shape)} do not match train_feats: pass one per row"
        )
    if train_feats.shape[0] == 0:
        raise LongtailError("the kNN training set is empty: check the training split")
    if k < 1 or temperature <= 0 or chunk < 1:
        raise LongtailError(f"k={k}, temperature={temperature}, chunk={chunk}: all must be > 0")
    low, high = (int(v) for v in torch.aminmax(train_labels))
    if low < 0 or high >= num_classes:
        raise LongtailError(
            f"train labels span [{low}, {high}] but num_classes is {num_classes}: fix num_classes"
        )
    k = min(k, train_feats.shape[0])
    bank = F.normalize(train_feats.detach().float(), dim=1)
    labels = train_labels.long()
    preds = []
    for start in range(0, test_feats.shape[0], chunk):
        query = F.normalize(test_feats[start : start + chunk].detach().float(), dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        scores = torch.zeros(query.shape[0], num_classes, device=query.device)
        scores.scatter_add_(1, labels[idx], weights)
        preds.append(scores.argmax(dim=1))
    if not preds:
        return torch.empty(0, dtype=torch.int64, device=test_feats.device)
    return torch.cat(preds)

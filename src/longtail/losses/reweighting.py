"""Per-class loss weights from training counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def class_balanced_weights(counts: Sequence[int], beta: float) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (CVPR 2019), eq. 2-3.

    The effective number of samples of class c is E_c = (1 - beta^n_c) / (1 - beta); the weight is
    w_c = 1 / E_c = (1 - beta) / (1 - beta^n_c), normalised so that sum_c w_c = C (as the
    LDAM-DRW code does). beta = 0 gives uniform weights. Classes with n_c = 0 get weight 0.

    Returns: float32 [C].
    """
    n = torch.as_tensor(list(counts), dtype=torch.float64)
    present = n > 0
    weights = torch.zeros_like(n)
    weights[present] = (1.0 - beta) / (
        1.0 - torch.pow(torch.tensor(beta, dtype=n.dtype), n[present])
    )
    weights = weights / weights.sum() * len(n)
    return weights.float()

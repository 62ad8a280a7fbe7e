"""SimSiam's symmetrised negative-cosine loss with stop-gradient (Chen & He, CVPR 2021).

With p_k = h(f(x_k)) the predictor outputs and z_k = f(x_k) the projector outputs of two views,

    D(p, z) = - <p / ||p||, z / ||z||>                      (eq. 1)
    L = 1/2 D(p1, stopgrad(z2)) + 1/2 D(p2, stopgrad(z1))   (eq. 2, with eq. 3's stop-gradient)

averaged over the batch. Its minimum is -1 (every p aligned with the other view's z).

Per-example ``weights`` w [N] (rwSAM's re-weighted perturbation loss) give sum_i w_i L_i / N:
divided by N, not by sum w, so weights of mean 1 keep the unweighted scale (all ones give the
plain mean) and rwSAM, which normalises its perturbation by the gradient norm, sees only ratios.
The arithmetic runs in float32 at least (and outside autocast) whatever the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.errors import LongtailError
from longtail.losses.kernel import check_example_weights

# A zero row normalises to zero (cosine 0, gradient ~1/eps but finite) instead of 0/0 = NaN.
SIMSIAM_NORMALIZE_EPS = 1e-8


def _check_pair(p: Tensor, z: Tensor, names: str) -> None:
    if p.dim() != 2 or p.shape != z.shape or p.shape[0] == 0:
        raise LongtailError(
            f"SimSiam {names} have shapes {tuple(p.shape)} and {tuple(z.shape)}: pass predictor"
            " and projector outputs of the same non-empty shape [N, D]"
        )


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """D(p_i, stopgrad(z_i)) = -cos(p_i, z_i) per row (SimSiam eq. 1); no gradient reaches ``z``.

    Shapes: p [N, D], z [N, D] -> [N] in float32 at least (float64 stays float64).
    """
    _check_pair(p, z, "p and z")
    dtype = torch.promote_types(torch.promote_types(p.dtype, z.dtype), torch.float32)
    # autocast would redo the normalisation in bf16 (~3 significant digits on a loss near -1)
    with torch.autocast(device_type=p.device.type, enabled=False):
        p_unit = F.normalize(p.to(dtype), dim=1, eps=SIMSIAM_NORMALIZE_EPS)
        z_unit = F.normalize(z.detach().to(dtype), dim=1, eps=SIMSIAM_NORMALIZE_EPS)
        return -(p_unit * z_unit).sum(dim=1)


def simsiam_per_example(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """L_i = 1/2 D(p1_i, sg(z2_i)) + 1/2 D(p2_i, sg(z1_i)) (SimSiam eq. 2): four [N, D] -> [N]."""
    _check_pair(p1, p2, "p1 and p2")
    _check_pair(z1, z2, "z1 and z2")
    return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def simsiam_loss(
    p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, weights: Tensor | None = None
) -> Tensor:
    """Batch mean of :func:`simsiam_per_example`, or sum_i w_i L_i / N with ``weights`` [N] >= 0."""
    per_example = simsiam_per_example(p1, p2, z1, z2)
    if weights is None:
        return per_example.mean()
    w = check_example_weights(weights, per_example.shape[0], "SimSiam weights")
    return (w.to(per_example.device, per_example.dtype) * per_example).sum() / per_example.shape[0]


class SimSiamLoss(nn.Module):
    """SimSiam's loss as a module: ``loss(p1, p2, z1, z2, weights=None)`` -> scalar.

    p1, p2: predictor outputs [N, D] of the two views; z1, z2: projector outputs [N, D] (detached
    here, so pass them as they come); weights: optional [N] per-example weights (module doc).
    """

    def forward(
        self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, weights: Tensor | None = None
    ) -> Tensor:
        return simsiam_loss(p1, p2, z1, z2, weights)

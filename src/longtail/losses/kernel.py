"""The one contrastive kernel: a masked multi-positive log-softmax over a similarity matrix.

Every contrastive loss in longtail is this kernel plus a way of building its masks:

    loss_i = log sum_{a in D(i)} v_ia exp(s_ia)  -  sum_{p} w_ip s_ip / sum_{p} w_ip

for anchor i with logits s_i. = z_i . c_. / tau against a contrast set (a batch, a queue, or class
prototypes), denominator set D(i) (``denominator_mask``), non-negative positive weights w_ip
(``positive_weights``) and positive denominator weights v_ia (``denominator_weights``, 1 unless
given: BCL's class-averaging divides each class's terms by its count in the batch). This is SupCon's L_out (Khosla et al. 2020, eq. 2): the mean over positives
of -log softmax_p, written as one logsumexp minus a weighted mean, which is exact whether or not
the positives lie inside D(i) (PSC keeps its positive out of the denominator).

Anchors with no positive weight are excluded from the mean; if no anchor has a positive the loss
is 0 (with a graph, so ``backward`` still works). The arithmetic runs in float32 at least: with
tau = 0.07 logits reach ~14, and bf16 logsumexp loses the small terms.

:func:`weighted_mean_over_valid` adds per-anchor weights (rwSAM's re-weighted perturbation loss)
without changing the unweighted mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

from longtail.errors import LongtailError


def masked_contrastive(
    logits: Tensor,
    positive_weights: Tensor,
    denominator_mask: Tensor,
    denominator_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-anchor loss and which anchors count.

    Args:
        logits: [N, M] similarities / tau.
        positive_weights: [N, M] >= 0 (0/1 masks or soft weights).
        denominator_mask: [N, M] bool, True where an entry enters anchor i's logsumexp.
        denominator_weights: [N, M] > 0 where ``denominator_mask`` is True (elsewhere unread), or
            None for all ones: entry a enters anchor i's denominator as v_ia exp(s_ia).

    Returns:
        (loss [N] in the logits' float dtype (float32 at least), valid [N] bool).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    logits = logits.to(dtype)
    weights = positive_weights.to(dtype)
    has_denominator = denominator_mask.any(dim=1, keepdim=True)  # [N, 1]
    shifted = logits
    if denominator_weights is not None:  # log(v exp(s)) = s + log v, inside the mask only
        log_v = torch.log(denominator_weights.to(dtype).masked_fill(~denominator_mask, 1.0))
        shifted = logits + log_v
    masked = shifted.masked_fill(~denominator_mask, float("-inf"))
    # a row with an empty denominator would give -inf and NaN gradients: it is excluded anyway
    masked = torch.where(has_denominator, masked, torch.zeros_like(masked))
    log_denominator = torch.logsumexp(masked, dim=1)  # [N]
    weight_sum = weights.sum(dim=1)  # [N]
    valid = (weight_sum > 0) & has_denominator.squeeze(1)
    # zero the logits where weights are 0 so that -inf/garbage never meets a zero weight
    positive_mean = (weights * logits.masked_fill(weights == 0, 0.0)).sum(1) / weight_sum.clamp_min(
        torch.finfo(dtype).tiny
    )
    loss = torch.where(valid, log_denominator - positive_mean, torch.zeros_like(log_denominator))
    return loss, valid


def mean_over_valid(loss: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``loss`` over the anchors that have positives; 0 (with a graph) when none do."""
    count = valid.sum()
    return torch.where(count > 0, (loss * valid).sum() / count.clamp_min(1), loss.sum() * 0.0)


def check_example_weights(weights: Tensor, n: int, name: str = "weights") -> Tensor:
    """``weights`` unchanged if it is a finite, non-negative [n] tensor; LongtailError otherwise.

    The finiteness/sign check reads one bool back from the device (one sync per call).
    """
    if not isinstance(weights, Tensor) or weights.shape != (n,):
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise LongtailError(
            f"{name} has shape {shape} but the batch has {n} examples: pass a 1-D tensor [{n}],"
            " one weight per example"
        )
    if weights.is_complex() or not bool((torch.isfinite(weights) & (weights >= 0)).all()):
        raise LongtailError(
            f"{name} must be finite and >= 0: replace NaN/inf/negative weights (e.g. clamp_min(0))"
        )
    return weights


def weighted_mean_over_valid(loss: Tensor, valid: Tensor, weights: Tensor | None = None) -> Tensor:
    """``sum_i w_i valid_i loss_i / #valid``: a per-anchor weighted mean, 0 (with a graph) if none.

    Divided by the number of valid anchors, not by the sum of their weights, so weights of mean 1
    keep the loss on the unweighted scale and all-ones weights give the unweighted mean; rwSAM
    normalises its perturbation by the gradient norm, so only the weights' ratios matter there.
    ``weights=None`` is exactly :func:`mean_over_valid` (bit for bit).

    Shapes: loss [N], valid [N] bool, weights [N] >= 0 -> scalar (weights are moved to
    ``loss``'s device and dtype).
    """
    if weights is None:
        return mean_over_valid(loss, valid)
    w = check_example_weights(weights, loss.shape[0], "anchor_weights").to(loss.device, loss.dtype)
    count = valid.sum()
    weighted = loss * w * valid
    return torch.where(count > 0, weighted.sum() / count.clamp_min(1), weighted.sum() * 0.0)

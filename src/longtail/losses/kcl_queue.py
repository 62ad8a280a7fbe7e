"""KCL's loss against a labelled key queue (Kang et al., ICLR 2021, BalFeat's ``kcl_builder.py``).

For N queries q_i (the query encoder's, normalised), their own keys k_i (the momentum encoder's
view of the same images) and a queue Q of K earlier keys with labels:

    L_i = -1/(1+k'_i) sum_{p in {k_i} u S_i} log( exp(q_i.p / tau) / sum_{a in {k_i} u Q} exp(q_i.a / tau) )

S_i: up to k queue slots of label y_i drawn uniformly at random (k'_i <= k when fewer exist);
with k = 0 it is MoCo's InfoNCE (the own key the only positive, the queue all negatives).
The batch's other keys are not contrasted (they are enqueued after the loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from longtail.losses.kernel import masked_contrastive, mean_over_valid
from longtail.losses.masks import DrawLayout, cosine_logits, sample_k_positives, unit_rows


def kcl_queue_loss(
    queries: Tensor,
    labels: Tensor,
    keys: Tensor,
    queue_keys: Tensor,
    queue_labels: Tensor,
    k: int,
    temperature: float,
    generator: torch.Generator | None,
    layout: DrawLayout | None = None,
) -> Tensor:
    """BalFeat's KCL loss over [own key, queue] (module docstring); a scalar.

    queries [N, D] (with gradient), labels [N], keys [N, D] (the key encoder's, same images),
    queue_keys [K, D], queue_labels [K] (K may be 0). Features are normalised here. Consumes
    one ``torch.rand`` [N, K] from ``generator`` (the k-positive draw; none when k = 0, MoCo), or
    the larger draw that ``layout`` places these rows in (a rank's part of the global draw).
    Every anchor has its own key as a positive, so the mean is over all N anchors.
    """
    q = unit_rows(queries)
    own = (q * unit_rows(keys)).sum(1, keepdim=True) / temperature  # [N, 1]
    logits = torch.cat([own, cosine_logits(q, unit_rows(queue_keys), temperature)], dim=1)
    same_class = labels[:, None] == queue_labels[None, :]  # [N, K]
    positives = torch.cat(
        [torch.ones_like(same_class[:, :1]), sample_k_positives(same_class, k, generator, layout)],
        dim=1,
    )
    loss, valid = masked_contrastive(logits, positives, torch.ones_like(positives))
    return mean_over_valid(loss, valid)

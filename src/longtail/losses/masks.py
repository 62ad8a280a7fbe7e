"""The contrast set shared by the batch losses (InfoNCE, SupCon, KCL) and KCL's k-positive draw.

A batch loss compares N anchors with M candidates: the batch itself (M = N, each anchor's own row
excluded) or ``ref_features`` filled from outside (an all-gather across ranks, a MoCo queue). Only
the masks differ from loss to loss; the log-softmax is :func:`longtail.losses.kernel.masked_contrastive`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from longtail.errors import LongtailError

NORMALIZE_EPS = 1e-12  # F.normalize's: a zero row stays zero, no NaN (its gradient is ~1/eps)


def unit_rows(x: Tensor) -> Tensor:
    """L2-normalise the rows of ``x`` [N, D] in float32 at least (bf16 logits lose the small terms)."""
    return F.normalize(x.to(torch.promote_types(x.dtype, torch.float32)), dim=1, eps=NORMALIZE_EPS)


def cosine_logits(anchors: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    """``anchors @ candidates.T / temperature``: [N, D] x [M, D] -> [N, M], never under autocast.

    Autocast would run the matmul in bf16/fp16; at tau = 0.07 a logit of 14 then carries an error
    of ~0.05, which is larger than the differences the loss is trying to learn.
    """
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        dtype = torch.promote_types(anchors.dtype, candidates.dtype)
        return anchors.to(dtype) @ candidates.to(dtype).T / temperature


def check_temperature(temperature: float) -> float:
    if not temperature > 0:
        raise LongtailError(f"temperature={temperature} must be > 0: pass e.g. temperature=0.1")
    return float(temperature)


@dataclass(frozen=True)
class ContrastSet:
    """Anchors, candidates and which candidate is each anchor's own row.

    anchors [N, D] and candidates [M, D] are unit rows (float32 at least); labels [N];
    ref_labels [M]; not_self [N, M] bool, False where candidate j is anchor i itself.
    """

    anchors: Tensor
    candidates: Tensor
    labels: Tensor
    ref_labels: Tensor
    not_self: Tensor


def build_contrast_set(
    features: Tensor,
    labels: Tensor,
    ref_features: Tensor | None,
    ref_labels: Tensor | None,
    self_offset: int | None,
) -> ContrastSet:
    """The batch against itself (``ref_features=None``) or against ``ref_features``/``ref_labels``.

    With refs, ``self_offset`` says anchor i is ref row ``self_offset + i`` (rank * N_local after
    an all-gather); ``None`` means the anchors are not among the refs (a MoCo queue).
    """
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise LongtailError(
            f"features {tuple(features.shape)} and labels {tuple(labels.shape)} do not match:"
            " pass features [N, D] and labels [N]"
        )
    if (ref_features is None) != (ref_labels is None):
        raise LongtailError(
            "ref_features and ref_labels must be given together: pass both (e.g. the gathered"
            " batch or the queue with its labels) or neither"
        )
    if ref_features is None or ref_labels is None:
        ref_features, ref_labels = features, labels
        self_offset = 0 if self_offset is None else self_offset
    if ref_features.dim() != 2 or ref_features.shape[1] != features.shape[1]:
        raise LongtailError(
            f"ref_features {tuple(ref_features.shape)} must be [M, {features.shape[1]}]"
            " like features: pass the same embedding dimension"
        )
    if ref_labels.shape != ref_features.shape[:1]:
        raise LongtailError(
            f"ref_labels {tuple(ref_labels.shape)} must be [{ref_features.shape[0]}]:"
            " pass one label per ref_features row"
        )
    n, m = features.shape[0], ref_features.shape[0]
    rows = torch.arange(n, device=features.device)
    columns = torch.arange(m, device=features.device)
    if self_offset is None:
        not_self = torch.ones(n, m, dtype=torch.bool, device=features.device)
    elif 0 <= self_offset <= m - n:
        not_self = columns[None, :] != (rows + self_offset)[:, None]
    else:
        raise LongtailError(
            f"self_offset={self_offset} puts the {n} anchors outside the {m} ref rows:"
            " pass rank * N_local, or None when the anchors are not among the refs"
        )
    return ContrastSet(unit_rows(features), unit_rows(ref_features), labels, ref_labels, not_self)


@dataclass(frozen=True)
class DrawLayout:
    """Where an [N, M] block of positives sits in a larger draw of uniform keys [shape].

    Entry (i, j) of the block takes key (rows[i], cols[j]) of the draw: under data parallelism
    every rank draws the global keys from the same generator and keeps its anchors' rows and its
    refs' columns, in whatever order its features have them, so the positives are one process's.
    rows [N] / cols [M] int64 on any device.
    """

    rows: Tensor
    cols: Tensor
    shape: tuple[int, int]

    @classmethod
    def row_block(cls, first: int, n: int, total: int, m: int) -> DrawLayout:
        """Rows ``first .. first + n - 1`` of a [total, m] draw, every column (a rank's anchors
        against refs that every rank holds alike: a MoCo queue)."""
        return cls(torch.arange(first, first + n), torch.arange(m), (total, m))


def sample_k_positives(
    candidates: Tensor,
    k: int,
    generator: torch.Generator | None,
    layout: DrawLayout | None = None,
) -> Tensor:
    """Keep, per row, ``min(k, candidates.sum(1))`` of the True entries, uniformly at random.

    candidates [N, M] bool -> [N, M] bool. One uniform key per entry, non-candidates pushed below
    every key, then a row-wise top-k: a uniform draw without replacement, with no loop over rows.
    ``k = 0`` keeps nothing and draws nothing. Consumes one ``torch.rand`` [N, M], or
    [layout.shape] of which this block takes the rows and columns ``layout`` names.
    """
    if k == 0:  # MoCo (KCL with k = 0): nothing to draw
        return torch.zeros_like(candidates)
    device = candidates.device if generator is None else generator.device
    n, m = candidates.shape
    if layout is None:
        keys = torch.rand((n, m), generator=generator, device=device)
    else:
        if (len(layout.rows), len(layout.cols)) != (n, m):
            raise LongtailError(
                f"a draw layout of {len(layout.rows)} x {len(layout.cols)} for {n} x {m} candidates:"
                " pass one row index per anchor and one column index per ref"
            )
        keys = torch.rand(layout.shape, generator=generator, device=device)
        keys = keys[layout.rows.to(device)][:, layout.cols.to(device)]
    keys = keys.to(candidates.device)
    keys = keys.masked_fill(~candidates, -1.0)
    chosen = keys.topk(min(k, candidates.shape[1]), dim=1).indices
    picked = torch.zeros_like(candidates).scatter_(1, chosen, True)
    return picked & candidates


def kcl_positive_mask(
    contrast: ContrastSet,
    k: int,
    generator: torch.Generator | None,
    instance_ids: Tensor | None = None,
    ref_instance_ids: Tensor | None = None,
    layout: DrawLayout | None = None,
) -> Tensor:
    """KCL's positives [N, M] bool: the anchor's other views, plus k sampled same-class entries.

    ``instance_ids`` [N] / ``ref_instance_ids`` [M] (both or neither): entries sharing the anchor's
    instance id (its other views) are always positive and do not count against k; the k are drawn
    uniformly among the remaining same-class entries (among all of them without instance ids).
    Anchors with fewer than k candidates keep them all. Consumes one ``torch.rand`` [N, M] (or
    the larger draw ``layout`` places these entries in: :func:`sample_k_positives`).
    """
    same_class = (contrast.labels[:, None] == contrast.ref_labels[None, :]) & contrast.not_self
    if instance_ids is None or ref_instance_ids is None:
        if instance_ids is not None or ref_instance_ids is not None:
            raise LongtailError(
                "instance_ids with ref_features needs ref_instance_ids: pass one id per ref row"
                " (-1 for queue entries that are no anchor's view), or neither"
            )
        return sample_k_positives(same_class, k, generator, layout)
    own_views = (instance_ids[:, None] == ref_instance_ids[None, :]) & contrast.not_self
    return own_views | sample_k_positives(same_class & ~own_views, k, generator, layout)

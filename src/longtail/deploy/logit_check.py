"""The check every exported model passes before it is written: its logits equal eager's."""

from __future__ import annotations

from torch import Tensor

from longtail.errors import LongtailError


def check_logits(
    got: Tensor, want: Tensor, tolerance: float, what: str, fallback: str
) -> tuple[float, float]:
    """``(max |got - want|, scale)`` of logits ``[B, K]``, scale = max(max |want|, 1); a one-line
    LongtailError naming ``what`` differs and the ``fallback`` when the difference passes
    ``tolerance * scale`` (a traced graph may fuse ops in another order, no more)."""
    scale = max(float(want.abs().max()), 1.0)
    diff = float((got - want).abs().max())
    if diff > tolerance * scale:
        raise LongtailError(
            f"{what}'s logits differ from eager by {diff:.3g} (scale {scale:.3g}): not written;"
            f" {fallback}"
        )
    return diff, scale

"""loss.*: the classification loss of a run (its name is a key of the losses' registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from longtail.errors import LongtailError
from longtail.losses import CLASSIFICATION_LOSSES


@dataclass
class LossConfig:
    """Classification loss; ``reweight_epoch`` switches on class-balanced weights (DRW, Cao et al.)."""

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "name": tuple(CLASSIFICATION_LOSSES),
        "cb_type": ("softmax", "sigmoid", "focal"),
        "reweight": ("none", "class_balanced"),
    }

    name: str = "ce"  # ce | focal | class_balanced | ldam | logit_adjusted | balanced_softmax
    gamma: float = 1.0  # focal and class-balanced focal (LDAM-DRW's focal default)
    cb_type: str = "softmax"  # class_balanced: softmax | sigmoid | focal (Cui et al. 2019)
    beta: float = 0.9999  # class-balanced weights (1 - beta) / (1 - beta^n_c), normalised to sum C
    max_margin: float = 0.5  # LDAM: largest margin (the rarest class's)
    scale: float = 30.0  # LDAM: logit scale s on a cosine classifier
    tau: float = 1.0  # logit adjustment strength
    reweight: str = "none"  # none | class_balanced (DRW with reweight_epoch > 0)
    reweight_epoch: int = 0  # epoch (0-based) from which the weights apply; 0 = from the start

    def check(self, classifier: str) -> None:
        """The section's rules; ``classifier`` is model.classifier (LDAM needs a cosine one)."""
        if not 0 <= self.beta < 1:
            raise LongtailError(f"loss.beta must be in [0, 1) (got {self.beta}): e.g. 0.9999")
        if self.reweight != "none" and self.name not in ("ce", "focal", "ldam"):
            raise LongtailError(
                f"loss.reweight applies to ce, focal and ldam, not {self.name}: set"
                " loss.reweight=none"
            )
        if self.name == "ldam" and classifier != "cosine":
            raise LongtailError(
                "loss.name=ldam scales cosine logits by loss.scale: set model.classifier=cosine"
            )
        if self.gamma < 0 or self.scale <= 0 or self.max_margin < 0:
            raise LongtailError("loss.gamma and loss.max_margin must be >= 0 and loss.scale > 0")

"""rwSAM's per-example weights (Liu, HaoChen, Gaidon, Ma, ICLR 2022), kept and refreshed in training.

rwSAM weights the loss that defines the SAM perturbation so that rare examples count more; the
descent gradient at the perturbed point stays unweighted (:func:`longtail.optim.sam.sam_step`).

* ``kde`` (the paper's label-free method): w_i proportional to p(f_i)^-power, p a leave-one-out
  Gaussian kernel density estimate over the L2-normalised pooled BACKBONE features f_i of the
  unaugmented training images (the representation being learned, before any projection head),
  bandwidth the median distance to the ``neighbors``-th neighbour unless ``sam.bandwidth`` is set,
  clipped at ``max_weight`` x the mean and normalised to mean 1
  (:func:`longtail.optim.sample_weights.kde_weights`). The weights start at 1 (plain SAM) and are
  re-estimated every ``refresh_every`` epochs from epoch ``refresh_every`` on: an untrained
  network's features say nothing about rarity. These choices are ours: the reference repository
  loads pre-computed weights and never published the estimator (anchors.md §4.1).
* ``label`` (the oracle ablation, an upper bound): w_i proportional to n_{y_i}^-power, mean 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from longtail.data.stream import FileImages
from longtail.eval.balancedness import few_many_ratio
from longtail.eval.probe import extract_features
from longtail.optim.config import SamConfig
from longtail.optim.sample_weights import kde_weights, label_weights


class ExampleWeights:
    """Weights ``[N]`` (mean 1) of the training subset's examples, indexed by position."""

    def __init__(
        self,
        cfg: SamConfig,
        images: Tensor | FileImages,
        labels: Tensor,
        class_counts: Sequence[int],
        backbone: nn.Module,
        transform: Callable[[Tensor], Tensor],
        batch_size: int,
        thresholds: tuple[int, int] = (100, 20),  # many / few, for the summary's groups
    ) -> None:
        self.cfg, self.images, self.labels = cfg, images, labels
        self.counts = [int(n) for n in class_counts]
        self.backbone, self.transform, self.batch_size = backbone, transform, batch_size
        self.thresholds = thresholds
        if cfg.weights == "label":
            self.values = label_weights(labels, self.counts, cfg.power).float()
        else:
            self.values = torch.ones(labels.shape[0], device=labels.device)

    @property
    def active(self) -> bool:
        return self.cfg.weights != "none"

    def set_epoch(self, epoch: int) -> None:
        """Re-estimate the KDE weights at epochs refresh_every, 2 refresh_every, ..."""
        if self.cfg.weights == "kde" and epoch > 0 and epoch % self.cfg.refresh_every == 0:
            feats = extract_features(
                self.backbone, self.images, batch_size=self.batch_size, transform=self.transform
            )
            self.values = kde_weights(
                feats,
                power=self.cfg.power,
                bandwidth=self.cfg.bandwidth,
                neighbors=self.cfg.neighbors,
                max_weight=self.cfg.max_weight,
            ).to(self.labels.device)

    def __call__(self, indices: Tensor) -> Tensor | None:
        """The weights of a batch ``[B]``, or None when the perturbation is unweighted."""
        return self.values[indices] if self.active else None

    def summary(self) -> dict[str, float]:
        """For metrics.jsonl: the largest weight, and the mean weight of the rarest classes over
        that of the most frequent ones (the groups of :func:`longtail.eval.balancedness.few_many_ratio`)
        — labels are read for this report only, never by the kde weights."""
        per_class = torch.bincount(self.labels, self.values.double(), len(self.counts))
        per_class = per_class / torch.tensor(self.counts, dtype=torch.float64).clamp_min(1)
        record = {"rw_weight_max": round(float(self.values.max()), 4)}
        ratio = few_many_ratio(per_class.cpu(), self.counts, *self.thresholds)
        if ratio is not None:
            record["rw_weight_rare_frequent"] = round(ratio, 4)
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = state["values"].to(self.labels.device)

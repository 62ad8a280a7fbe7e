"""eval.*, probe.*: how a run is evaluated (test split, groups) and probed (frozen features)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from longtail.errors import LongtailError, require

# datasets an out-of-domain probe can read from a root folder alone
OOD_DATASETS = ("cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "pack")


@dataclass
class EvalConfig:
    """Evaluation on the test split: how often, the class groups, and test-time corrections."""

    every: int = 1  # evaluate on the test set every N epochs (and always after the last)
    batch_size: int = 1024
    many_threshold: int = 100  # many: > 100 training images
    few_threshold: int = 20  # few: < 20 training images
    posthoc_tau: float | None = None  # post-hoc logit adjustment at test time (Menon et al. 2021)
    tau_norm: float | None = None  # tau-normalised classifier, bias dropped (Kang et al. 2020)

    def check(self) -> None:
        for name in ("every", "batch_size"):
            value = getattr(self, name)
            if not value > 0:
                raise LongtailError(
                    f"eval.{name} must be > 0 (got {value}): fix the recipe or override"
                )
        if self.few_threshold > self.many_threshold:
            raise LongtailError(
                "eval.few_threshold must not exceed eval.many_threshold (20 <= 100)"
            )
        if self.tau_norm is not None and self.posthoc_tau is not None:
            raise LongtailError("eval.tau_norm and eval.posthoc_tau are two corrections: set one")


@dataclass
class ProbeConfig:
    """Frozen-representation evaluation after training: linear probes, kNN and balancedness.

    The balanced probe trains on the dataset's full training split (every class equally, capped by
    ``balanced_per_class``); the long-tailed probe on the run's own subset; the OOD probe on another
    dataset resized to the training images' size and channels. All test on the matching test split.
    """

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"size": ("auto", "full")}

    enabled: bool = True
    balanced_per_class: int | None = None  # cap per class of the balanced probe set; None = all
    long_tailed: bool = True  # also probe with the long-tailed training subset
    knn_k: int = 200  # kNN monitor of InstDisc / SimSiam CIFAR: k = 200, tau = 0.1
    knn_temperature: float = 0.1
    iterations: int = 100  # L-BFGS iterations of the logistic-regression probe
    weight_decay: float = 1.0e-4
    ood: str | None = (
        None  # another dataset for an out-of-domain probe: fashion_mnist | cifar10 | ...
    )
    ood_root: str = "data/fashion-mnist"
    ood_per_class: int | None = None  # cap per class of the OOD probe's training set
    # auto: a shortened run probes sets sized to it (longtail.eval.probe_budget); full: as above
    size: str = "auto"

    def check(self) -> None:
        for name in ("balanced_per_class", "ood_per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LongtailError(f"probe.{name} must be >= 1 or null (got {value})")
        require(
            ("probe.knn_k", self.knn_k, self.knn_k >= 1, ">= 1"),
            ("probe.knn_temperature", self.knn_temperature, self.knn_temperature > 0, "> 0"),
            ("probe.iterations", self.iterations, self.iterations >= 1, ">= 1"),
            ("probe.weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
        )
        if self.ood is not None and self.ood not in OOD_DATASETS:
            raise LongtailError(
                f"probe.ood={self.ood!r} is not one of {', '.join(OOD_DATASETS)}: pick one (its"
                " data at probe.ood_root)"
            )

"""Evaluation: confusion matrix, per-class and many/medium/few accuracies, the per-class plot, and
frozen-representation evaluation (feature extraction, linear probe, kNN, balancedness).

Conventions (CONVENTIONS.md): evaluation always takes ``num_classes`` and the training class
counts explicitly; a class absent from the evaluation set has no accuracy (NaN inside, ``None`` in
JSON) and is left out of every mean; an empty group is ``None``.
"""

from longtail.eval.balancedness import balancedness
from longtail.eval.groups import group_means, rank_groups, shot_groups, summarize
from longtail.eval.knn import knn_predict
from longtail.eval.metrics import confusion_matrix, per_class_accuracy, top1
from longtail.eval.plots import plot_per_class_accuracy
from longtail.eval.predict import evaluate, predict
from longtail.eval.probe import assert_unchanged, extract_features, linear_probe, snapshot

__all__ = [
    "assert_unchanged",
    "balancedness",
    "confusion_matrix",
    "extract_features",
    "knn_predict",
    "linear_probe",
    "snapshot",
    "evaluate",
    "group_means",
    "per_class_accuracy",
    "plot_per_class_accuracy",
    "predict",
    "rank_groups",
    "shot_groups",
    "summarize",
    "top1",
]

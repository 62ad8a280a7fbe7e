"""Losses for long-tailed learning."""

from longtail.losses.reweighting import class_balanced_weights

__all__ = ["class_balanced_weights"]

"""Many/medium/few and head/middle/tail groups, group means and the summary dict."""

from __future__ import annotations

import json
import math

import pytest
import torch

from longtail.errors import LongtailError
from longtail.eval import confusion_matrix, group_means, rank_groups, shot_groups, summarize

# CIFAR-10-LT at imbalance ratio 100, as published (LDAM-DRW, Cao et al. 2019): 12,406 images.
CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def lt_counts(n_max: int, num_classes: int, ratio: float) -> list[int]:
    """n_c = floor(n_max * ratio^(-c / (C - 1))), the LDAM-DRW rule."""
    return [math.floor(n_max * ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]


def test_published_counts_follow_the_formula() -> None:
    assert lt_counts(5000, 10, 100) == CIFAR10_LT_100
    assert sum(CIFAR10_LT_100) == 12_406
    assert sum(lt_counts(500, 100, 100)) == 10_847


def test_shot_groups_cifar10_lt_has_no_few_class() -> None:
    groups = shot_groups(CIFAR10_LT_100)
    assert groups == {"many": list(range(8)), "medium": [8, 9], "few": []}


def test_shot_groups_cifar100_lt_is_35_35_30() -> None:
    groups = shot_groups(lt_counts(500, 100, 100))
    assert groups["many"] == list(range(35))
    assert groups["medium"] == list(range(35, 70))
    assert groups["few"] == list(range(70, 100))


def test_shot_group_boundaries_and_configurable_thresholds() -> None:
    counts = [101, 100, 20, 19]
    # Exactly 100 and exactly 20 are medium (BalFeat's code would put 20 in few; we do not).
    assert shot_groups(counts) == {"many": [0], "medium": [1, 2], "few": [3]}
    assert shot_groups(counts, many_threshold=20, few_threshold=20) == {
        "many": [0, 1],
        "medium": [2],
        "few": [3],
    }
    assert shot_groups(counts, many_threshold=200, few_threshold=5) == {
        "many": [],
        "medium": [0, 1, 2, 3],
        "few": [],
    }
    with pytest.raises(LongtailError, match="few_threshold"):
        shot_groups(counts, many_threshold=10, few_threshold=20)
    with pytest.raises(LongtailError, match="empty"):
        shot_groups([])
    with pytest.raises(LongtailError, match="negative"):
        shot_groups([5, -1])


def test_rank_groups_ten_classes_is_3_4_3() -> None:
    assert rank_groups(CIFAR10_LT_100) == {
        "head": [0, 1, 2],
        "middle": [3, 4, 5, 6],
        "tail": [7, 8, 9],
    }


def test_rank_groups_follow_frequency_not_class_index() -> None:
    counts = [50, 5000, 83, 2997, 139, 1796, 232, 1077, 387, 645]
    assert rank_groups(counts) == {
        "head": [1, 3, 5],
        "middle": [6, 7, 8, 9],
        "tail": [0, 2, 4],
    }


def test_rank_groups_break_ties_by_lower_class_index() -> None:
    # All equal (r = 1): the stable sort keeps index order.
    assert rank_groups([10] * 10) == {"head": [0, 1, 2], "middle": [3, 4, 5, 6], "tail": [7, 8, 9]}
    # Class 3 ties class 2 at the head/middle boundary: the lower index (2) is the more frequent.
    groups = rank_groups([9, 9, 7, 7, 5, 5, 5, 5, 1, 1])
    assert groups is not None and groups["head"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("num_classes", "sizes"),
    [(1, (0, 1, 0)), (2, (1, 0, 1)), (5, (2, 1, 2)), (15, (5, 5, 5)), (20, (6, 8, 6))],
)
def test_rank_group_sizes_round_30_percent_half_up(
    num_classes: int, sizes: tuple[int, int, int]
) -> None:
    groups = rank_groups(list(range(num_classes, 0, -1)))
    assert groups is not None
    assert (len(groups["head"]), len(groups["middle"]), len(groups["tail"])) == sizes


def test_rank_groups_none_above_twenty_classes() -> None:
    assert rank_groups([100] * 21) is None
    assert rank_groups(lt_counts(500, 100, 100)) is None


def test_group_means_skip_absent_classes_and_empty_groups() -> None:
    per_class = torch.tensor([0.9, float("nan"), 0.5, 0.1, float("nan")], dtype=torch.float64)
    means = group_means(
        per_class,
        {"a": [0, 1, 2], "b": [3], "all_absent": [1, 4], "empty": [], "all": [0, 1, 2, 3]},
    )
    assert means["a"] == pytest.approx((0.9 + 0.5) / 2)
    assert means["b"] == pytest.approx(0.1)
    assert means["all_absent"] is None
    assert means["empty"] is None
    assert means["all"] == pytest.approx((0.9 + 0.5 + 0.1) / 3)
    with pytest.raises(LongtailError, match="outside"):
        group_means(per_class, {"a": [5]})


def cifar10_like_eval() -> tuple[torch.Tensor, torch.Tensor]:
    """13 test images of classes 0..8, 7 predicted right; class 9 absent from the test set."""
    targets = torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8])
    preds = torch.tensor([0, 1, 1, 2, 3, 0, 5, 6, 0, 8, 0, 0, 9])
    return preds, targets


def test_summarize_against_hand_counts() -> None:
    preds, targets = cifar10_like_eval()
    summary = summarize(confusion_matrix(preds, targets, 10), CIFAR10_LT_100)
    # per class (percent): 0: 1/2, 1..3: 1, 4: 0, 5,6: 1, 7: 0, 8: 1/4, 9: absent
    per_class = [50.0, 100.0, 100.0, 100.0, 0.0, 100.0, 100.0, 0.0, 25.0, None]
    assert summary["per_class"] == pytest.approx(per_class)
    assert summary["top1"] == pytest.approx(100 * 7 / 13)
    present = [a for a in per_class if a is not None]
    assert summary["mean_class_acc"] == pytest.approx(sum(present) / len(present))
    assert summary["many"] == pytest.approx(sum(per_class[:8]) / 8)  # type: ignore[arg-type]
    assert summary["medium"] == pytest.approx(25.0)  # class 9 absent, so only class 8 counts
    assert summary["few"] is None
    assert summary["head"] == pytest.approx((50 + 100 + 100) / 3)
    assert summary["middle"] == pytest.approx((100 + 0 + 100 + 100) / 4)
    assert summary["tail"] == pytest.approx((0 + 25) / 2)
    assert summary["num_classes"] == 10
    assert summary["train_counts"] == CIFAR10_LT_100
    assert summary["group_sizes"] == {
        "many": 8,
        "medium": 2,
        "few": 0,
        "head": 3,
        "middle": 4,
        "tail": 3,
    }
    json.dumps(summary, allow_nan=False)  # no NaN may reach a results file


def test_summarize_hundred_classes_has_null_rank_groups() -> None:
    counts = lt_counts(500, 100, 100)
    targets = torch.arange(100).repeat(3)
    preds = torch.where(targets < 35, targets, 0)  # only the many-shot classes are right
    summary = summarize(confusion_matrix(preds, targets, 100), counts)
    assert summary["many"] == pytest.approx(100.0)
    assert summary["medium"] == pytest.approx(0.0)
    assert summary["few"] == pytest.approx(0.0)
    assert summary["head"] is None and summary["middle"] is None and summary["tail"] is None
    assert summary["group_sizes"] == {
        "many": 35,
        "medium": 35,
        "few": 30,
        "head": None,
        "middle": None,
        "tail": None,
    }
    assert summary["top1"] == pytest.approx(35.0)


def test_summarize_rejects_wrong_number_of_counts() -> None:
    preds, targets = cifar10_like_eval()
    with pytest.raises(LongtailError, match="train_counts has 9 entries"):
        summarize(confusion_matrix(preds, targets, 10), CIFAR10_LT_100[:9])

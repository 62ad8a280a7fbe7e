"""Long-tailed counts and indices against published counts and LDAM-DRW's own procedure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data.fixtures import shuffled_labels, write_image_folder
from longtail.data.lt_index import (
    counts_for_total,
    load_indices,
    long_tail_counts,
    long_tail_indices,
    make_long_tail,
    save_indices,
)
from longtail.data.readers.imagefolder import list_image_folder
from longtail.errors import LongtailError


def groups(counts: list[int]) -> tuple[int, int, int]:
    """Many / medium / few class counts: > 100, 20..100, < 20 training images."""
    many = sum(n > 100 for n in counts)
    few = sum(n < 20 for n in counts)
    return many, len(counts) - many - few, few


def test_cifar10_lt_published_counts() -> None:
    counts = long_tail_counts(5000, 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12_406
    assert sum(long_tail_counts(5000, 10, 50)) == 13_996
    assert sum(long_tail_counts(5000, 10, 10)) == 20_431


def test_cifar100_lt_published_counts_and_groups() -> None:
    counts = long_tail_counts(500, 100, 100)
    assert sum(counts) == 10_847
    assert groups(counts) == (35, 35, 30)
    assert sum(long_tail_counts(500, 100, 50)) == 12_608
    assert sum(long_tail_counts(500, 100, 10)) == 19_573


def test_fashion_mnist_lt_count() -> None:
    assert sum(long_tail_counts(6000, 10, 100)) == 14_886


@pytest.mark.parametrize(
    ("n_max", "classes", "ratio"), [(5000, 10, 100), (500, 100, 37.5), (77, 7, 3)]
)
def test_exp_counts_match_ldam_drw_loop(n_max: int, classes: int, ratio: float) -> None:
    # Verbatim arithmetic of LDAM-DRW imbalance_cifar.py get_img_num_per_cls (imb_type "exp").
    imb_factor = 1.0 / ratio
    expected = [int(n_max * (imb_factor ** (c / (classes - 1.0)))) for c in range(classes)]
    assert long_tail_counts(n_max, classes, ratio) == expected


def test_step_profile_and_balanced() -> None:
    assert long_tail_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    # Odd C: the first C // 2 keep n_max, every other class is a tail class.
    assert long_tail_counts(100, 5, 10, "step") == [100, 100, 10, 10, 10]
    assert long_tail_counts(300, 4, 1) == [300] * 4
    assert long_tail_counts(300, 1, 50) == [300]


@pytest.mark.parametrize("ratio", [0.5, 0.0, -3.0, float("nan"), float("inf")])
def test_bad_ratio_is_a_one_line_error(ratio: float) -> None:
    with pytest.raises(LongtailError, match=r"imbalance ratio must be >= 1 \(got") as info:
        long_tail_counts(5000, 10, ratio)
    assert "\n" not in str(info.value)


def test_zero_sample_class_and_unknown_profile_are_errors() -> None:
    with pytest.raises(LongtailError, match="class 8 gets 0 images.*lower the imbalance ratio"):
        long_tail_counts(50, 10, 100)
    with pytest.raises(LongtailError, match="profile"):
        long_tail_counts(50, 10, 10, "linear")


TOTAL_CASES = [
    (12_406, 10, 100, "exp"),
    (5000, 100, 10, "exp"),
    (1001, 7, 5, "step"),
    (100, 3, 1, "exp"),
]


@pytest.mark.parametrize(("total", "classes", "ratio", "profile"), TOTAL_CASES)
def test_counts_for_total_sums_exactly_and_keeps_the_shape(
    total: int, classes: int, ratio: float, profile: str
) -> None:
    counts = counts_for_total(total, classes, ratio, profile)
    assert sum(counts) == total
    fractions = np.asarray(long_tail_counts(10**9, classes, ratio, profile), dtype=np.float64)
    exact = total * fractions / fractions.sum()
    # Largest-remainder rounding moves every class by less than one image.
    assert np.all(np.abs(np.asarray(counts) - exact) < 1.0)
    assert counts == sorted(counts, reverse=True)


def test_counts_for_total_balanced_remainders_go_to_low_classes() -> None:
    assert counts_for_total(100, 3, 1) == [34, 33, 33]
    assert counts_for_total(12_406, 10, 100)[0] / counts_for_total(12_406, 10, 100)[-1] == (
        pytest.approx(100, rel=0.05)
    )


def test_counts_for_total_errors() -> None:
    with pytest.raises(LongtailError, match="class 0 needs"):
        counts_for_total(20_000, 10, 10, available=[4000] * 10)
    with pytest.raises(LongtailError, match="gets 0 images"):
        counts_for_total(30, 10, 100)
    with pytest.raises(LongtailError, match="one available count per class"):
        counts_for_total(100, 10, 10, available=[50] * 9)


def ldam_reference(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """LDAM-DRW's gen_imbalanced_data, with its global NumPy generator seeded once."""
    np.random.seed(seed)
    selected = []
    for the_class, the_img_num in zip(np.unique(labels), counts, strict=True):
        idx = np.where(labels == the_class)[0]
        np.random.shuffle(idx)
        selected.append(idx[:the_img_num])
    return np.concatenate(selected)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_shuffle_rule_equals_ldam_procedure(seed: int) -> None:
    labels = shuffled_labels(200, 10, seed=7)
    counts = long_tail_counts(200, 10, 20)
    indices = long_tail_indices(labels, counts, seed=seed)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, ldam_reference(labels, counts, seed))
    assert np.bincount(labels[indices], minlength=10).tolist() == counts


def test_shuffle_rule_is_deterministic_per_seed() -> None:
    labels = shuffled_labels(100, 5, seed=3)
    counts = [100, 50, 25, 12, 6]
    first = long_tail_indices(labels, counts, seed=5)
    np.testing.assert_array_equal(first, long_tail_indices(labels, counts, seed=5))
    assert not np.array_equal(first, long_tail_indices(labels, counts, seed=6))


def test_first_rule_takes_first_in_source_order() -> None:
    labels = shuffled_labels(30, 3, seed=0)
    indices = long_tail_indices(labels, [10, 5, 1], rule="first")
    expected = np.concatenate([np.where(labels == c)[0][:n] for c, n in enumerate([10, 5, 1])])
    np.testing.assert_array_equal(indices, expected)


def test_index_errors() -> None:
    labels = shuffled_labels([5, 3], 2, seed=0)
    with pytest.raises(LongtailError, match="class 1 has 3 images but the subset asks for 4"):
        long_tail_indices(labels, [5, 4])
    with pytest.raises(LongtailError, match="counts has 1 entries"):
        long_tail_indices(labels, [5])
    with pytest.raises(LongtailError, match="subset rule"):
        long_tail_indices(labels, [5, 3], rule="random")


def test_first_rule_on_image_folder_takes_first_files(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path, ["b_cls", "a_cls"], [6, 6], size=8).root
    listing = list_image_folder(root, "train")
    assert listing.classes == ["a_cls", "b_cls"]
    indices = long_tail_indices(listing.labels, [6, 2], rule="first")
    names = [listing.paths[i].relative_to(root / "train").as_posix() for i in indices[-2:]]
    assert names == ["b_cls/0000.png", "b_cls/0001.png"]


def test_save_and_load_indices_round_trip(tmp_path: Path) -> None:
    indices = np.array([4, 0, 9, 2], dtype=np.int64)
    meta = {"counts": [3, 1], "ratio": 3.0, "profile": "exp", "seed": 0, "rule": "shuffle"}
    path = tmp_path / "run" / "lt_indices.json"
    save_indices(path, indices, meta)
    loaded, loaded_meta = load_indices(path)
    np.testing.assert_array_equal(loaded, indices)
    assert loaded.dtype == np.int64
    assert loaded_meta == meta
    assert json.loads(path.read_text())["indices"] == [4, 0, 9, 2]
    assert [p.name for p in path.parent.iterdir()] == ["lt_indices.json"]  # no temp file left


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"counts": [1]}', '{"indices": [1, -2]}', '{"indices": [1.5]}'],
)
def test_malformed_index_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LongtailError, match="index file"):
        load_indices(path)
    with pytest.raises(LongtailError, match="does not exist"):
        load_indices(tmp_path / "absent.json")


def test_make_long_tail_subset(tmp_path: Path) -> None:
    written = write_image_folder(tmp_path, ["x", "y", "z"], 8, size=4)
    subset, indices = make_long_tail(written.splits["train"], ratio=4)
    assert subset.class_counts() == [8, 4, 2]
    np.testing.assert_array_equal(subset.images, written.splits["train"].images[indices])


@pytest.mark.shared_data
@pytest.mark.parametrize("rule", ["shuffle", "first"])
def test_real_cifar10_jpeg_lt_counts(cifar10_jpeg_root: Path, rule: str) -> None:
    listing = list_image_folder(cifar10_jpeg_root, "train")
    assert np.bincount(listing.labels).tolist() == [5000] * 10
    counts = long_tail_counts(5000, 10, 100)
    indices = long_tail_indices(listing.labels, counts, seed=0, rule=rule)
    assert len(indices) == 12_406
    assert len(np.unique(indices)) == 12_406
    assert np.bincount(listing.labels[indices]).tolist() == [
        5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50,
    ]  # fmt: skip
    if rule == "first":
        last_class = [listing.paths[i].name for i in indices[-50:]]
        assert last_class == [f"{i:04d}.jpg" for i in range(50)]

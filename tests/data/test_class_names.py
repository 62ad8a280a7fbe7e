"""Splits share one label set, matched by class name (never by folder position)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data.fixtures import write_image_folder
from longtail.config import load_config
from longtail.data.class_names import align_labels
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError

CLASSES = ["apple", "bee", "cat", "dog"]


def test_the_same_classes_keep_their_labels() -> None:
    labels = np.array([0, 3, 1])
    assert align_labels(labels, CLASSES, CLASSES, "test") is labels


def test_a_split_lacking_a_class_is_renumbered_by_name() -> None:
    got = align_labels(np.array([0, 1, 2, 1]), ["apple", "cat", "dog"], CLASSES, "test")
    assert got.tolist() == [0, 2, 3, 2]


def test_a_class_the_training_split_lacks_is_one_line_naming_it() -> None:
    with pytest.raises(LongtailError, match="'zebra' .*the training split lacks") as err:
        align_labels(np.array([0, 1]), ["apple", "zebra"], CLASSES, "test")
    assert "\n" not in str(err.value)


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    write_image_folder(root, CLASSES, [12, 8, 6, 4], size=8, n_test_per_class=2)
    return root


def _prepared(root: Path, *extra: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    cfg = load_config(None, ["data.dataset=imagefolder", f"data.root={root}",
                             "data.subset_rule=none", "data.cache_dir=null", *extra])  # fmt: skip
    data = prepare_data(cfg.data, torch.device("cpu"))
    return data.classes, data.test_labels, data.test_images


def test_a_test_tree_without_a_class_is_scored_against_the_right_classes(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _, full_labels, full_images = _prepared(root)
    shutil.rmtree(root / "test" / "bee")  # the test tree lacks the second class
    classes, labels, images = _prepared(root)
    assert classes == CLASSES
    keep = full_labels != 1
    assert labels.tolist() == full_labels[keep].tolist()  # cat stays 2, dog 3 (not 1 and 2)
    assert torch.equal(images, full_images[keep])


def test_a_test_tree_with_an_unknown_class_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    shutil.move(root / "test" / "dog", root / "test" / "zebra")
    with pytest.raises(LongtailError, match="the test split has a class 'zebra'"):
        _prepared(root)

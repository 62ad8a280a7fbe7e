"""load_split: dataset names, format detection, channel conversion and statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.fixtures import (
    CIFAR10_CLASSES,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_idx,
    write_image_folder,
    write_split_list,
)
from longtail.data.arrays import ImageArrays
from longtail.data.registry import DATASETS, convert_channels, dataset_stats, load_split
from longtail.errors import LongtailError


def test_cifar10_format_is_detected(tmp_path: Path) -> None:
    pickles = write_cifar10_pickles(tmp_path / "p", n_per_class=2, n_test_per_class=1)
    folder = write_image_folder(tmp_path / "j", CIFAR10_CLASSES, 2, size=32, n_test_per_class=1)
    from_pickles = load_split("cifar10", tmp_path / "p", "train")
    np.testing.assert_array_equal(from_pickles.images, pickles.splits["train"].images)
    from_folder = load_split("cifar10", tmp_path / "j", "test")
    np.testing.assert_array_equal(from_folder.images, folder.splits["test"].images)
    assert from_folder.classes == CIFAR10_CLASSES
    with pytest.raises(
        LongtailError, match="neither cifar-10-batches-py pickles nor an ImageFolder"
    ):
        load_split("cifar10", tmp_path, "train")


def test_cifar100_and_idx_datasets(tmp_path: Path) -> None:
    write_cifar100_pickles(tmp_path)
    assert load_split("cifar100", tmp_path, "test").class_counts() == [1] * 100
    written = write_idx(tmp_path / "fm", 3, 1)
    fm = load_split("fashion_mnist", tmp_path / "fm", "train")
    assert fm.images.shape[-1] == 1 and fm.classes[0] == "T-shirt/top"
    rgb = load_split("mnist", tmp_path / "fm", "train", channels=3)
    assert rgb.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(rgb.images, np.repeat(written.splits["train"].images, 3, -1))


def test_imagefolder_and_split_list(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "f", ["a", "b"], 2, size=8)
    assert load_split("imagefolder", tmp_path / "f", "train", channels=1).images.shape == (
        4,
        8,
        8,
        1,
    )
    root, list_file, labels = write_split_list(tmp_path / "s", [2, 1], num_classes=2)
    got = load_split("split_list", root, "train", image_size=12)
    np.testing.assert_array_equal(got.labels, labels)
    list_file.rename(root / "elsewhere.txt")
    other = load_split(
        "split_list", root, "ignored", image_size=12, list_file=root / "elsewhere.txt"
    )
    np.testing.assert_array_equal(other.images, got.images)
    with pytest.raises(LongtailError, match="image size"):
        load_split("split_list", root, "train")


def test_name_and_root_errors(tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="unknown dataset 'cifar1000'.*" + ", ".join(DATASETS)):
        load_split("cifar1000", tmp_path, "train")
    with pytest.raises(LongtailError, match=r"data.root .*nowhere does not exist: "):
        load_split("cifar10", tmp_path / "nowhere", "train")


def test_rgb_to_gray_matches_pillow() -> None:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(5, 7, 9, 3)).astype(np.uint8)
    gray = convert_channels(ImageArrays(images, np.zeros(5), ["x"]), 1).images
    for i in range(5):
        np.testing.assert_array_equal(
            gray[i, ..., 0], np.asarray(Image.fromarray(images[i]).convert("L"))
        )


def test_dataset_stats_against_float64_numpy() -> None:
    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, size=(9000, 4, 4, 3)).astype(np.uint8)  # spans two chunks
    mean, std = dataset_stats(ImageArrays(images, np.zeros(9000), ["x"]))
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)

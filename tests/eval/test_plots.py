"""The per-class accuracy plot is a readable PNG, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from longtail.errors import LongtailError
from longtail.eval import plot_per_class_accuracy

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
NAMES = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_plot_writes_a_valid_png_and_no_temp_file(tmp_path: Path) -> None:
    per_class: list[float | None] = [95.1, 97.0, 80.2, 70.5, 75.0, 60.3, 65.0, 55.5, 40.0, None]
    path = tmp_path / "plots" / "per_class.png"
    plot_per_class_accuracy(
        per_class, COUNTS, path, title="CE, CIFAR-10-LT r=100", class_names=NAMES
    )
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    assert [p.name for p in path.parent.iterdir()] == ["per_class.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file, not a 0600 temp file


def test_plot_many_classes_with_zero_count_and_overwrite(tmp_path: Path) -> None:
    counts = [max(0, 500 - 5 * c) for c in range(101)]  # last class has 0 training images
    per_class = [float(c % 100) for c in range(101)]
    path = tmp_path / "p.png"
    path.write_bytes(b"old")
    plot_per_class_accuracy(per_class, counts, path, title="100+1 classes")
    with Image.open(path) as image:
        assert image.format == "PNG"


def test_plot_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="per_class has 2"):
        plot_per_class_accuracy([1.0, 2.0], COUNTS, tmp_path / "x.png", title="t")
    with pytest.raises(LongtailError, match="class_names has 2"):
        plot_per_class_accuracy(
            [1.0] * 10, COUNTS, tmp_path / "x.png", title="t", class_names=["a", "b"]
        )
    assert not list(tmp_path.iterdir())

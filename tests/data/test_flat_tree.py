"""One's own photos as ``root/<class>/*``: a held-out test split, and the tree used as it is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.fixtures import write_image_folder
from longtail.config import load_config
from longtail.data.readers.imagefolder import HOLDOUT, list_image_folder
from longtail.data.registry import load_split
from longtail.errors import LongtailError
from longtail.train.trainer import train

COUNTS = [10, 5, 1]


@pytest.fixture(scope="module")
def flat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A naturally imbalanced flat tree (10 / 5 / 1 images of classes a, b, c)."""
    made = tmp_path_factory.mktemp("made")
    write_image_folder(made, ["a", "b", "c"], COUNTS, size=16)
    root = tmp_path_factory.mktemp("photos")
    for folder in (made / "train").iterdir():
        shutil.move(str(folder), root / folder.name)
    return root


def test_each_class_holds_out_its_share_and_the_splits_partition_the_tree(flat: Path) -> None:
    train_split, test_split = (list_image_folder(flat, s) for s in ("train", "test"))
    want_test = [int(np.ceil(HOLDOUT * n)) if n >= 2 else 0 for n in COUNTS]  # [2, 1, 0]
    assert np.bincount(test_split.labels, minlength=3).tolist() == want_test
    assert np.bincount(train_split.labels, minlength=3).tolist() == [
        n - t for n, t in zip(COUNTS, want_test, strict=True)
    ]
    assert not set(train_split.paths) & set(test_split.paths)
    assert len(set(train_split.paths) | set(test_split.paths)) == sum(COUNTS)
    again = list_image_folder(flat, "test")  # the same draw on every call and machine
    assert again.paths == test_split.paths and train_split.classes == ["a", "b", "c"]


def test_a_flat_tree_decodes_through_the_cache(flat: Path, tmp_path: Path) -> None:
    cached = load_split("imagefolder", flat, "test", cache_dir=tmp_path)
    again = load_split("imagefolder", flat, "test", cache_dir=tmp_path)
    plain = load_split("imagefolder", flat, "test")
    assert np.array_equal(cached.images, plain.images) and np.array_equal(
        again.labels, plain.labels
    )
    before = load_split("imagefolder", flat, "train", cache_dir=tmp_path)
    shutil.copy(sorted((flat / "c").iterdir())[0], flat / "a" / "zz_new.png")  # a photo added
    try:
        grown = load_split("imagefolder", flat, "train", cache_dir=tmp_path)
        fresh = load_split("imagefolder", flat, "train")  # no cache: the tree as it is now
        assert np.array_equal(grown.images, fresh.images)  # the cache saw the new photo
        assert not np.array_equal(grown.images, before.images)
    finally:
        (flat / "a" / "zz_new.png").unlink()
    with pytest.raises(LongtailError, match="flat <class>/<image> tree"):
        list_image_folder(flat / "a", "train")  # images, no class folders: neither layout


def test_a_naturally_imbalanced_tree_trains_as_it_is(flat: Path, tmp_path: Path) -> None:
    cfg = load_config(None, [
        "data.dataset=imagefolder", f"data.root={flat}", "data.subset_rule=none",
        "data.cache_dir=null", "model.name=resnet20", "model.kwargs.width=0.25",
        "train.batch_size=4", "train.epochs=1", "train.device=cpu", "train.progress=false",
        "probe.enabled=false", f"out_dir={tmp_path}",
    ])  # fmt: skip
    final = json.loads((train(cfg) / "final.json").read_text())
    assert final["train_counts"] == [8, 4, 1] and final["classes"] == ["a", "b", "c"]

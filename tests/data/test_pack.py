"""Data packs: the decoded pack equals the decoded source subset, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.fixtures import write_idx, write_image_folder
from longtail.config import load_config
from longtail.data.pack import read_pack, read_pack_meta
from longtail.data.pack_recipe import build_pack
from longtail.data.setup import describe_subset, prepare_data
from longtail.data.source import DataSource
from longtail.errors import LongtailError


def _check_round_trip(overrides: list[str], out: Path) -> None:
    cfg = load_config(None, overrides).data
    summary = build_pack(cfg, out)
    meta = read_pack_meta(out)
    full = DataSource.of(cfg).arrays("train")
    indices = np.asarray(meta["lt_index"]["indices"])
    packed = read_pack(out, "train")
    assert np.array_equal(packed.images, full.images[indices])
    assert np.array_equal(packed.labels, full.labels[indices])
    test = read_pack(out, "test")
    assert np.array_equal(test.images, DataSource.of(cfg).arrays("test").images)
    assert summary["counts"] == np.bincount(packed.labels, minlength=full.num_classes).tolist()
    as_pack = load_config(None, [*overrides, "data.dataset=pack", f"data.root={out}"]).data
    packed_counts, source_counts = describe_subset(as_pack), describe_subset(cfg)
    assert packed_counts["counts"] == source_counts["counts"]
    assert packed_counts["total"] == source_counts["total"]


def test_jpeg_folder_pack_keeps_the_file_bytes(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    write_image_folder(root, ["a", "b", "c"], [12, 8, 6], size=16, ext="jpg", n_test_per_class=3)
    overrides = ["data.dataset=imagefolder", f"data.root={root}", "data.imbalance_ratio=4"]
    _check_round_trip(overrides, tmp_path / "p.npz")


def test_array_pack_is_lossless_png(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=3)
    overrides = [
        "data.dataset=fashion_mnist",
        f"data.root={tmp_path / 'idx'}",
        "data.imbalance_ratio=5",
    ]
    _check_round_trip([*overrides, "data.cache_dir=null"], tmp_path / "p.npz")


def test_prepared_pack_matches_prepared_source(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=3)
    overrides = [
        "data.dataset=fashion_mnist",
        f"data.root={tmp_path / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=5",
    ]
    cfg = load_config(None, overrides).data
    build_pack(cfg, tmp_path / "p.npz")
    a = prepare_data(cfg, "cpu")  # type: ignore[arg-type]
    b = prepare_data(
        load_config(
            None, [*overrides, "data.dataset=pack", f"data.root={tmp_path / 'p.npz'}"]
        ).data,
        "cpu",
    )  # type: ignore[arg-type]
    assert (a.train_images == b.train_images).all() and (a.test_labels == b.test_labels).all()
    assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
    assert a.train_counts == b.train_counts


def test_bad_packs(tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="does not exist"):
        read_pack(tmp_path / "nope.npz", "train")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(LongtailError, match="damaged or not a pack"):
        read_pack_meta(foreign)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(LongtailError, match="not a readable pack"):
        read_pack_meta(junk)
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=3)
    overrides = [
        "data.dataset=fashion_mnist",
        f"data.root={tmp_path / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=5",
    ]
    build_pack(load_config(None, overrides).data, tmp_path / "p.npz")
    other = load_config(
        None,
        [
            *overrides,
            "data.dataset=pack",
            f"data.root={tmp_path / 'p.npz'}",
            "data.imbalance_ratio=10",
        ],
    )
    with pytest.raises(LongtailError, match="rebuild the pack"):
        describe_subset(other.data)


@pytest.mark.parametrize("rule", ["shuffle", "first"])
def test_source_pack_subsets_like_its_source(tmp_path: Path, rule: str) -> None:
    """A pack of the whole split (``pack --whole``) is subset by each run exactly as its source."""
    write_idx(tmp_path / "idx", n_train_per_class=20, n_test_per_class=3)
    source = ["data.dataset=fashion_mnist", f"data.root={tmp_path / 'idx'}", "data.cache_dir=null"]
    build_pack(load_config(None, source).data, tmp_path / "full.npz", whole=True)
    run = ["data.imbalance_ratio=5", f"data.subset_rule={rule}", "data.subset_seed=3"]
    a = prepare_data(load_config(None, [*source, *run]).data, "cpu")  # type: ignore[arg-type]
    as_pack = ["data.dataset=pack", f"data.root={tmp_path / 'full.npz'}", "data.cache_dir=null"]
    b = prepare_data(load_config(None, [*as_pack, *run]).data, "cpu")  # type: ignore[arg-type]
    assert (
        a.train_counts
        == b.train_counts
        == describe_subset(load_config(None, [*as_pack, *run]).data)["counts"]
    )
    assert (a.train_images == b.train_images).all()
    assert (a.train_labels == b.train_labels).all()
    assert (a.test_images == b.test_images).all()

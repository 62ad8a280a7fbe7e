"""Decoded-array cache: hits skip decoding, round trips are exact, stale or broken files rebuild."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import longtail.data.registry as registry
from data.fixtures import write_cifar100_pickles, write_image_folder
from longtail.data.arrays import ImageArrays
from longtail.data.cache import cache_path, cached
from longtail.data.readers.imagefolder import read_image_folder


def counting(build: Callable[[], ImageArrays]) -> tuple[Callable[[], ImageArrays], list[int]]:
    calls = [0]

    def wrapped() -> ImageArrays:
        calls[0] += 1
        return build()

    return wrapped, calls


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "src", ["a", "b", "c"], [3, 2, 1], size=6)
    return tmp_path / "src"


def key(folder: Path) -> dict[str, object]:
    return {"reader": "imagefolder", "root": str(folder), "split": "train", "channels": 3}


def test_second_call_is_a_hit_and_round_trip_is_exact(tmp_path: Path, folder: Path) -> None:
    build, calls = counting(lambda: read_image_folder(folder, "train"))
    first = cached(key(folder), build, tmp_path / "cache", sources=[folder / "train"])
    second = cached(key(folder), build, tmp_path / "cache", sources=[folder / "train"])
    assert calls[0] == 1
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.classes == first.classes == ["a", "b", "c"]
    assert second.images.dtype == np.uint8 and second.labels.dtype == np.int64
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".npz"]  # no temp file left


def test_coarse_fields_round_trip(tmp_path: Path) -> None:
    write_cifar100_pickles(tmp_path / "c100")
    build, calls = counting(lambda: registry.load_split("cifar100", tmp_path / "c100", "train"))
    cached({"reader": "x"}, build, tmp_path / "cache")
    got = cached({"reader": "x"}, build, tmp_path / "cache")
    want = build()
    assert calls[0] == 2  # once for the cache, once for `want`
    np.testing.assert_array_equal(got.coarse_labels, want.coarse_labels)  # type: ignore[arg-type]
    assert got.coarse_classes == want.coarse_classes


def test_touched_added_or_removed_source_rebuilds(tmp_path: Path, folder: Path) -> None:
    build, calls = counting(lambda: read_image_folder(folder, "train"))
    sources = [folder / "train"]
    cached(key(folder), build, tmp_path / "cache", sources=sources)
    target = folder / "train" / "b" / "0000.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    cached(key(folder), build, tmp_path / "cache", sources=sources)
    assert calls[0] == 2
    (folder / "train" / "c" / "0000.png").rename(folder / "train" / "c" / "0001.png")
    cached(key(folder), build, tmp_path / "cache", sources=sources)
    assert calls[0] == 3
    cached(key(folder), build, tmp_path / "cache", sources=sources)
    assert calls[0] == 3
    cached({**key(folder), "channels": 1}, build, tmp_path / "cache", sources=sources)
    assert calls[0] == 4  # another key, another entry


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_cache_file_is_rebuilt(tmp_path: Path, folder: Path, damage: str) -> None:
    build, calls = counting(lambda: read_image_folder(folder, "train"))
    want = cached(key(folder), build, tmp_path / "cache")
    path = cache_path(key(folder), tmp_path / "cache")
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"PK\x03\x04junk", "empty": b""}[damage]
    )
    got = cached(key(folder), build, tmp_path / "cache")
    assert calls[0] == 2
    np.testing.assert_array_equal(got.images, want.images)
    cached(key(folder), build, tmp_path / "cache")
    assert calls[0] == 2  # the rebuilt file is good again


def test_failed_write_leaves_no_file(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_written(file: object, **arrays: object) -> None:
        file.write(b"PK partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt  # as if the process were killed mid-write

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        cached(key(folder), lambda: read_image_folder(folder, "train"), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_split_uses_the_cache(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = registry.load_split("imagefolder", folder, "train", cache_dir=tmp_path / "cache")

    def must_not_decode(*args: object, **kwargs: object) -> ImageArrays:
        raise AssertionError("decoded again despite a warm cache")

    monkeypatch.setattr(registry, "read_image_folder", must_not_decode)
    second = registry.load_split("imagefolder", folder, "train", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(second.images, first.images)
    gray_key_differs = pytest.raises(AssertionError, match="decoded again")
    with gray_key_differs:
        registry.load_split(
            "imagefolder", folder, "train", cache_dir=tmp_path / "cache", channels=1
        )

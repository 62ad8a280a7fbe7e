"""fetch.py offline: files already present, a file:// mirror, a damaged mirror, the local .deb."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import longtail.data.fetch as fetch
from data.fixtures import write_idx
from longtail.data.readers.idx import read_mnist_like
from longtail.errors import LongtailError

FASHION_MNIST_DEBS = sorted(Path("/tmp/fm").glob("dataset-fashion-mnist_*.deb"))


def no_outside_world(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetch reached for a network or subprocess")

    monkeypatch.setattr(fetch.subprocess, "run", refuse)
    monkeypatch.setattr(fetch.urllib.request, "urlopen", refuse)


def test_present_files_mean_nothing_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_idx(tmp_path, 2, 1)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    no_outside_world(monkeypatch)
    assert fetch.fetch_fashion_mnist(tmp_path) == tmp_path
    assert fetch.main(["fashion-mnist", str(tmp_path)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before


def test_download_from_a_mirror_lands_parsed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = write_idx(tmp_path / "mirror", 4, 2)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)  # no apt-get: straight to the URL
    dest = tmp_path / "dest"
    fetch.fetch_fashion_mnist(dest, base_url=(tmp_path / "mirror").as_uri() + "/")
    assert sorted(p.name for p in dest.iterdir()) == sorted(fetch.FASHION_MNIST_FILES)
    got = read_mnist_like(dest, "train")
    np.testing.assert_array_equal(got.images, mirror.splits["train"].images)
    np.testing.assert_array_equal(got.labels, mirror.splits["train"].labels)


def test_damaged_download_leaves_dest_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_idx(tmp_path / "mirror", 2, 1)
    damaged = tmp_path / "mirror" / "t10k-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:30])
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)
    monkeypatch.setattr(fetch, "FASHION_MNIST_URL", (tmp_path / "mirror").as_uri() + "/")
    with pytest.raises(LongtailError, match="could not fetch Fashion-MNIST .*t10k-images") as info:
        fetch.fetch_fashion_mnist(tmp_path / "dest")
    assert "\n" not in str(info.value)
    assert list((tmp_path / "dest").iterdir()) == []
    assert fetch.main(["fashion-mnist", str(tmp_path / "dest")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.skipif(
    not FASHION_MNIST_DEBS or shutil.which("dpkg") is None, reason="no local .deb or dpkg"
)
def test_local_deb_unpacks_the_real_files(tmp_path: Path) -> None:
    dest = fetch.fetch_fashion_mnist(tmp_path / "fm", deb=FASHION_MNIST_DEBS[-1])
    assert sorted(p.name for p in dest.iterdir()) == sorted(fetch.FASHION_MNIST_FILES)
    assert read_mnist_like(dest, "test").class_counts() == [1000] * 10

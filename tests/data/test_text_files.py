"""Split lists and recipes as editors write them: BOMs and CRLF read as meant, other encodings and
duplicate lines refused in one line that names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.config import load_config
from longtail.data.readers.split_list import read_split_list
from longtail.errors import LongtailError


def _list(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "train.txt"
    path.write_bytes(data)
    return path


def test_a_bom_and_crlf_list_reads_as_the_plain_list(tmp_path: Path) -> None:
    plain = read_split_list(_list(tmp_path, b"a/1.jpg 0\nb/2.jpg 1\n"), tmp_path, check_files=False)
    windows = _list(tmp_path, b"\xef\xbb\xbfa/1.jpg 0\r\nb/2.jpg 1\r\n")
    got = read_split_list(windows, tmp_path, check_files=False)
    assert got.paths == plain.paths == [tmp_path / "a/1.jpg", tmp_path / "b/2.jpg"]
    assert got.labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a/1.jpg 0\ncaf\xe9/2.jpg 1\n", r"train.txt:2: not UTF-8 text \(byte 0xe9\)"),
        (
            b"a/1.jpg 0\nb/2.jpg 1\na/1.jpg 0\n",
            r"train.txt:3: a/1.jpg is listed again \(first at line 1\)",
        ),
        (b"a/1.jpg 0\na/1.jpg 1\n", r"train.txt:2: a/1.jpg is listed again"),
    ],
    ids=["latin-1", "duplicate", "duplicate-other-label"],
)
def test_bad_lists_are_one_line_naming_the_line(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(LongtailError, match=message) as err:
        read_split_list(_list(tmp_path, data), tmp_path, check_files=False)
    assert "\n" not in str(err.value)


def test_a_bom_and_crlf_recipe_loads_and_a_latin1_one_is_one_line(tmp_path: Path) -> None:
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfname: windows\r\ntrain: {epochs: 3}\r\n")
    cfg = load_config(bom)
    assert cfg.name == "windows" and cfg.train.epochs == 3
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"train: {epochs: 3}\nname: caf\xe9\n")
    with pytest.raises(LongtailError, match=r"latin.yaml:2 is not UTF-8 text \(byte 0xe9\)"):
        load_config(latin)

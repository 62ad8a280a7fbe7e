"""bundle.py: a queue call's bundle stays within a device call's limits and unpacks to its sources."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from longtail.errors import LongtailError
from longtail.queue.bundle import (
    ESSENTIAL,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_TOTAL_BYTES,
    PLOTS,
    SUMMARY,
    extract,
    read_summary,
    write_bundle,
)

MIB = 2**20


def _fake_run(runs: Path, name: str, metrics_mib: float, plot_mib: float) -> Path:
    """A finished run folder: small config/final, metrics.jsonl and plots of random (incompressible)
    bytes, and a checkpoint that must never travel."""
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n")
    (run / "final.json").write_text(json.dumps({"top1": 50.0}))
    (run / "metrics.jsonl").write_bytes(os.urandom(int(metrics_mib * MIB)))
    for plot in PLOTS:
        (run / plot).write_bytes(os.urandom(int(plot_mib * MIB)))
    (run / "checkpoint.pt").write_bytes(os.urandom(1024))
    return run


def _members(out: Path) -> list[str]:
    """Every tar member name, in tar order then member order."""
    names = []
    for tar_path in sorted(out.glob("runs-*.tar.gz"), key=lambda p: int(p.name[5:-7])):
        with tarfile.open(tar_path) as tar:
            names += tar.getnames()
    return names


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("runs", "metrics_mib", "plot_mib"),
    [(10, 7.0, 1.5), (8, 8.5, 0.5), (3, 17.0, 2.0)],
    ids=["two-per-tar", "one-per-tar", "too-big-for-any-tar"],
)
def test_bundle_within_limits(
    tmp_path: Path, runs: int, metrics_mib: float, plot_mib: float
) -> None:
    """At most 8 files of 16 MiB, 64 MiB in all; essentials go in before any plot; what did not fit
    is in left_out, and never a checkpoint."""
    finished = {f"e{i}": _fake_run(tmp_path / "runs", f"run-{i}", metrics_mib, plot_mib)
                for i in range(runs)}  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    summary = {"queue": "owed.yaml", "entries": []}
    bundle = write_bundle(out, summary, finished)
    files = sorted(p.name for p in out.iterdir())
    assert sorted(bundle["files"]) == files and SUMMARY in files
    assert len(files) <= MAX_FILES
    sizes = [p.stat().st_size for p in out.iterdir()]
    assert max(sizes) <= MAX_FILE_BYTES and sum(sizes) <= MAX_TOTAL_BYTES
    members = _members(out)
    everything = {f"{r.name}/{f}" for r in finished.values() for f in (*ESSENTIAL, *PLOTS)}
    assert set(members) | set(bundle["left_out"]) == everything
    assert not set(members) & set(bundle["left_out"]) and len(members) == len(set(members))
    assert bundle["left_out"], "the case is meant to overflow the limits"
    kinds = [m.rsplit("/", 1)[1] in PLOTS for m in members]
    assert kinds == sorted(kinds), "a plot went in before an essential file"
    # every small file of every run travels: only what cannot fit is left out
    assert {
        f"{r.name}/{f}" for r in finished.values() for f in ("config.yaml", "final.json")
    } <= set(members)
    assert read_summary(out) == {**summary, "bundle": bundle}


def test_essentials_fill_the_total_before_plots(tmp_path: Path) -> None:
    """When the essentials alone pass 64 MiB, plots are left out while room remains for none of them."""
    finished = {f"e{i}": _fake_run(tmp_path / "runs", f"run-{i}", 7.0, 1.5) for i in range(10)}
    out = tmp_path / "out"
    out.mkdir()
    bundle = write_bundle(out, {}, finished)
    left = bundle["left_out"]
    assert [m for m in left if m.endswith("metrics.jsonl")] == ["run-9/metrics.jsonl"]
    assert sum(m.rsplit("/", 1)[1] in PLOTS for m in left) == 20  # 9 x 7 MiB leave < 1.5 MiB


def test_extract_round_trips_and_old_tars_go(tmp_path: Path) -> None:
    """extract() restores every member byte for byte; a new bundle replaces an old one's tars."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs-5.tar.gz").write_bytes(b"stale")
    study = tmp_path / "runs" / "sweep"
    study.mkdir(parents=True)
    (study / "sweep.json").write_text("[]")
    (study / "sweep.md").write_text("| x |\n")
    (study / "sweep.png").write_bytes(os.urandom(100))
    finished = {"a": _fake_run(tmp_path / "runs", "run-a", 0.1, 0.05), "sweep": study}
    bundle = write_bundle(out, {}, finished)
    assert not (out / "runs-5.tar.gz").exists() and bundle["left_out"] == []
    into = tmp_path / "into"
    extract(out, into)
    restored = sorted(p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file())
    assert restored == sorted(
        [f"run-a/{f}" for f in (*ESSENTIAL, *PLOTS)]
        + ["sweep/sweep.json", "sweep/sweep.md", "sweep/sweep.png"]
    )
    for name in restored:
        assert _digest(into / name) == _digest(tmp_path / "runs" / name)
    # a study's .json and .md are essential, its other files optional (they go in last)
    assert _members(out).index("sweep/sweep.png") > _members(out).index("sweep/sweep.md")


def test_extract_refuses_paths_outside(tmp_path: Path) -> None:
    """A member named ../x is refused, and nothing is written outside the target folder."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with tarfile.open(bundle / "runs-1.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(LongtailError, match="cannot be unpacked"):
        extract(bundle, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()

"""Fetch datasets that are not shipped: ``python -m longtail.data.fetch fashion-mnist DEST``.

Fashion-MNIST (Xiao et al., 2017) comes from, in order: a given ``--deb`` file; Debian's package
``dataset-fashion-mnist`` (``apt-get download`` + ``dpkg -x``, no install; ``apt-get update`` only
if the first download fails); the dataset's public home over HTTPS. Each file is checked (gzip and
idx header) in a temporary folder inside DEST and only then renamed into DEST, so DEST never holds
a partial file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from longtail.data.readers.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from longtail.errors import LongtailError

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_MNIST_URL = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
)
DEBIAN_PACKAGE = "dataset-fashion-mnist"
_DEB_FOLDER = Path("usr/share/datasets/fashion-mnist")


def _run(command: list[str], cwd: Path) -> None:
    """Run ``command``; a failure becomes a one-line LongtailError quoting its last stderr line."""
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as error:
        lines = error.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {error.returncode}"
        raise LongtailError(f"{' '.join(command[:2])} failed: {why}") from None


def _from_deb(deb: Path, work: Path) -> Path:
    """Unpack ``deb`` with ``dpkg -x`` into ``work``; returns the folder with the .gz files."""
    if shutil.which("dpkg") is None:
        raise LongtailError(f"cannot unpack {deb}: dpkg is not installed")
    _run(["dpkg", "-x", str(deb), str(work / "unpacked")], cwd=work)
    return work / "unpacked" / _DEB_FOLDER


def _from_apt(work: Path) -> Path:
    """``apt-get download`` the Debian package (retrying after ``apt-get update``) and unpack it."""
    try:
        _run(["apt-get", "download", DEBIAN_PACKAGE], cwd=work)
    except (LongtailError, subprocess.TimeoutExpired):
        _run(["apt-get", "update"], cwd=work)
        _run(["apt-get", "download", DEBIAN_PACKAGE], cwd=work)
    debs = sorted(work.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise LongtailError(f"apt-get download {DEBIAN_PACKAGE} left no .deb file")
    return _from_deb(debs[-1], work)


def _from_url(base_url: str, work: Path) -> Path:
    folder = work / "downloaded"
    folder.mkdir()
    for name in FASHION_MNIST_FILES:
        with urllib.request.urlopen(base_url + name, timeout=120) as response:
            (folder / name).write_bytes(response.read())
    return folder


def _check(folder: Path) -> None:
    """Parse every file's idx header and payload size (raises LongtailError when damaged)."""
    for name in FASHION_MNIST_FILES:
        read_idx(folder / name, IMAGES_MAGIC if "images" in name else LABELS_MAGIC)


def fetch_fashion_mnist(
    dest: str | Path, *, deb: str | Path | None = None, base_url: str | None = None
) -> Path:
    """Make ``dest`` hold Fashion-MNIST's four idx .gz files; a no-op when they are already there.

    Args:
        dest: target folder (created if needed).
        deb: a local ``dataset-fashion-mnist_*.deb`` to unpack instead of downloading anything.
        base_url: the fallback's folder URL (any URL urllib opens, ``file://`` included);
            None means ``FASHION_MNIST_URL``.

    Returns:
        ``dest``.

    Raises:
        LongtailError: every source failed (the message lists why each did).
    """
    dest = Path(dest).resolve()  # absolute: the helpers run commands inside a temp folder
    url = FASHION_MNIST_URL if base_url is None else base_url
    if all((dest / name).is_file() for name in FASHION_MNIST_FILES):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    # The temporary folder sits inside dest so the final renames stay on one file system.
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        work = Path(tmp)
        attempts: list[tuple[str, Callable[[], Path]]] = []
        if deb is not None:
            attempts.append((f"dpkg -x {deb}", lambda: _from_deb(Path(deb).resolve(), work)))
        elif shutil.which("apt-get") is not None:
            attempts.append((f"apt-get download {DEBIAN_PACKAGE}", lambda: _from_apt(work)))
        if deb is None:
            attempts.append((url, lambda: _from_url(url, work)))
        for label, attempt in attempts:
            try:
                folder = attempt()
                _check(folder)
            except (LongtailError, OSError, ValueError, subprocess.SubprocessError) as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                failures.append(reason if label in reason else f"{label}: {reason}")
                continue
            for name in FASHION_MNIST_FILES:
                os.replace(folder / name, dest / name)
            return dest
    raise LongtailError(
        f"could not fetch Fashion-MNIST into {dest} ({'; '.join(failures)}): copy the four idx "
        f".gz files there by hand"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m longtail.data.fetch fashion-mnist DEST [--deb FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m longtail.data.fetch", description=__doc__)
    parser.add_argument("dataset", choices=["fashion-mnist"])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--deb", type=Path, default=None, help="unpack this .deb, download nothing")
    args = parser.parse_args(argv)
    try:
        where = fetch_fashion_mnist(args.dest, deb=args.deb)
    except LongtailError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST is in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Decode once, cache on disk: one uncompressed ``.npz`` per (reader, root, split, source files).

The key hashes the caller's ``key_parts`` (reader name, resolved root, split, options) together
with a fingerprint of the source files: names, sizes and mtimes from one ``stat()`` each (60,000
files take ~0.2 s; no content hashing). Touching, adding or removing a source file changes the key,
so a stale cache is never read. Files are written to a temporary name in the cache folder and
``os.replace``d into place, so a killed process never leaves a half-written cache, and two
processes building the same entry at once both end with a complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from longtail.data.arrays import ImageArrays
from longtail.io import atomic_write

# Bump when the stored layout or any reader's decoding changes: old entries then miss.
CACHE_VERSION = 1


def fingerprint(sources: Iterable[str | Path]) -> str:
    """sha256 over (relative name, size, mtime_ns) of every file under each source, in sorted order.

    A source may be a file or a folder (walked recursively); a missing source is recorded as such.
    """
    digest = hashlib.sha256()
    for source in sources:
        base = Path(source)
        digest.update(f"<{os.path.abspath(base)}>".encode())
        if base.is_file():
            st = base.stat()
            digest.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
            continue
        if not base.is_dir():
            digest.update(b"missing\n")
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, base)
            for name in sorted(filenames):
                st = os.stat(os.path.join(dirpath, name))
                digest.update(f"{rel}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(
    key_parts: dict[str, Any], cache_dir: Path, sources: Iterable[str | Path] = ()
) -> Path:
    """Where the entry for ``key_parts`` + the current state of ``sources`` lives."""
    key = {"version": CACHE_VERSION, **key_parts, "sources": fingerprint(sources)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    label = "-".join(str(key_parts.get(k, "")) for k in ("reader", "split")).strip("-") or "arrays"
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)
    return Path(cache_dir) / f"{safe}-{digest}.npz"


def _save(arrays: ImageArrays, path: Path) -> None:
    meta = {"classes": arrays.classes, "coarse_classes": arrays.coarse_classes}
    fields: dict[str, Any] = {
        "images": arrays.images,
        "labels": arrays.labels,
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    }
    if arrays.coarse_labels is not None:
        fields["coarse_labels"] = arrays.coarse_labels
    atomic_write(path, lambda f: np.savez(f, **fields))


def _load(path: Path) -> ImageArrays:
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(stored["meta"].tobytes().decode())
        return ImageArrays(
            images=stored["images"],
            labels=stored["labels"],
            classes=list(meta["classes"]),
            coarse_labels=stored["coarse_labels"] if "coarse_labels" in stored.files else None,
            coarse_classes=meta["coarse_classes"],
        )


def cached(
    key_parts: dict[str, Any],
    build: Callable[[], ImageArrays],
    cache_dir: Path,
    *,
    sources: Iterable[str | Path] = (),
) -> ImageArrays:
    """Return the cached arrays for this key, calling ``build()`` (and storing it) only on a miss.

    Args:
        key_parts: JSON-able facts that decide the result: reader name, resolved root, split,
            channels, image size...; ``reader`` and ``split`` also name the file.
        build: decodes the data; called at most once.
        cache_dir: folder for the ``.npz`` files (created if needed).
        sources: files or folders whose names, sizes and mtimes join the key.

    A cache file that cannot be read (truncated, not a zip, wrong fields) is deleted and rebuilt.
    """
    path = cache_path(key_parts, cache_dir, sources)
    if path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
    arrays = build()
    _save(arrays, path)
    return arrays

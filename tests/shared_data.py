"""Where the tests find real data, and the rule for when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
FASHION_MNIST = REPO / "data" / "fashion-mnist"  # fetched by `make data` (make test runs it first)


def _missing(path: Path, fix: str) -> None:
    message = f"{path} is missing ({fix})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI=true: tests that need real data must not skip")
    pytest.skip(message)


def require_shared(relative: str) -> Path:
    """Path under ../shared/data; skip locally when missing, but fail under CI=true (DEVELOPERS.md)."""
    path = SHARED_DATA / relative
    if not path.exists():
        _missing(path, "the shared data folder beside the checkout")
    return path


def require_fashion_mnist() -> Path:
    """The real Fashion-MNIST idx files; fail under CI=true when `make data` did not fetch them."""
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        _missing(FASHION_MNIST, "run `make data`")
    return FASHION_MNIST

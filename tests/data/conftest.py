"""Fixtures for the data tests: real shared data sets (decoded once per session) and tiny writers.

The rule for missing real data lives in ``tests/shared_data.py``. Other areas import the writers
as ``from data.fixtures import ...`` (the root conftest puts tests/ on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.data.arrays import ImageArrays
from longtail.data.readers.imagefolder import read_image_folder
from shared_data import require_fashion_mnist, require_shared


@pytest.fixture(scope="session")
def cifar100_root() -> Path:
    """The real, lossless CIFAR-100 pickles (``cifar-100-python/``)."""
    return require_shared("cifar-100-python")


@pytest.fixture(scope="session")
def cifar10_jpeg_train(cifar10_jpeg_root: Path) -> ImageArrays:
    """The real CIFAR-10 JPEG training split, decoded once per session (~5 s)."""
    return read_image_folder(cifar10_jpeg_root, "train")


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """The real Fashion-MNIST idx .gz files, fetched into data/fashion-mnist by `make data`."""
    return require_fashion_mnist()

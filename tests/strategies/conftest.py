"""One tiny idx dataset (16 x 16 grey, 40 training images a class) per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.fixtures import write_idx


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("strategies")
    write_idx(root, n_train_per_class=40, n_test_per_class=3, size=16)
    return root

"""Test-session settings shared by every test module (this folder is put on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from shared_data import require_shared

# Numeric tests are pinned to fp32: train.precision=auto must not turn into bf16 on a CI machine whose
# CPU has native bf16 (subprocess runs inherit this). tests/train/test_precision.py lifts it.
os.environ["LONGTAIL_CPU_BF16"] = "0"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: one thread each. Two threads each make every small op wait
    # on a busy core (measured: 0.4 ms -> 63 ms for one augmentation batch).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cifar10_jpeg_root() -> Path:
    """The real CIFAR-10 JPEG copy (ImageFolder layout: train/<class>/*.jpg, test/<class>/*.jpg)."""
    return require_shared("cifar10-jpeg")

"""Test-session settings shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: one thread each avoids 2x2 oversubscription.
    torch.set_num_threads(1)


def require_shared(relative: str) -> Path:
    """Path under ../shared/data; skip locally when missing, but fail under CI=true (DEVELOPERS.md)."""
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"shared data {path} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: tests that need shared data must not skip)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def cifar10_jpeg_root() -> Path:
    """The real CIFAR-10 JPEG copy (ImageFolder layout: train/<class>/*.jpg, test/<class>/*.jpg)."""
    return require_shared("cifar10-jpeg")

"""The overrides of a tiny, fast training run on idx fixture data (tests/data/fixtures.py)."""

from __future__ import annotations

from pathlib import Path


def tiny_run(idx_root: Path, *extra: str) -> list[str]:
    """Fashion-MNIST-format data at ``idx_root``, r=10, a quarter-width ResNet-20, batch 16."""
    return [
        "data.dataset=fashion_mnist",
        f"data.root={idx_root}",
        "data.cache_dir=null",
        "data.imbalance_ratio=10",
        "model.name=resnet20",
        "model.kwargs.width=0.25",
        "train.batch_size=16",
        "train.progress=false",
        "probe.balanced_per_class=20",
        "probe.size=full",  # the probe sets as configured, though these runs are shortened
        "probe.iterations=10",
        *extra,
    ]

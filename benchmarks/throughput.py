"""Training throughput of a recipe: images/s and ms/step of the real training step.

    python benchmarks/throughput.py [RECIPE ...] [--steps 50] [--warmup 10] [key=value ...]

Runs the trainer's own step (device-resident data, batched augmentation, forward, cross-entropy,
backward, SGD) on each recipe's data, prints a table, and writes JSON records (recipe, device,
torch, commit, date, images_per_s, ms_per_step, peak_mem_mb) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded
from records import write_records  # noqa: E402

from longtail import runtime
from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.train.build import TrainingParts, build_training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_parts(recipe: str, overrides: list[str]) -> tuple[Any, torch.device, TrainingParts]:
    """(config, device, the trainer's parts) of a recipe, as ``longtail train`` builds them."""
    cfg = load_config(recipe, overrides)
    runtime.set_threads(cfg.train.threads)
    device = runtime.resolve_device(cfg.train.device)
    data = prepare_data(cfg.data, device)
    return cfg, device, build_training(cfg, data, device)


def measure(recipe: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    cfg, device, parts = training_parts(recipe, overrides)
    model, loader, step = parts.model, parts.loader, parts.step

    def batches():  # type: ignore[no-untyped-def]
        while True:
            yield from loader

    stream = batches()
    model.train()
    for _ in range(warmup):
        step(next(stream), cfg.optim.lr)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    loss = torch.zeros((), device=device)
    for _ in range(steps):
        loss += step(next(stream), cfg.optim.lr)
    _sync(device)
    elapsed = time.perf_counter() - t0
    ms = elapsed / steps * 1e3
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "recipe": recipe,
        "overrides": overrides,
        "model": cfg.model.name,
        "batch_size": cfg.train.batch_size,
        "steps": steps,
        "ms_per_step": round(ms, 3),
        "images_per_s": round(cfg.train.batch_size / ms * 1e3, 1),
        "epoch_s": round(len(loader) * ms / 1e3, 2),
        "peak_mem_mb": None if peak is None else round(peak, 1),
        "final_loss_mean": round(float(loss) / steps, 4),
        **runtime.provenance(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", help="recipes (.yaml) and key=value overrides")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args(argv)
    recipes = [i for i in args.items if i.endswith(".yaml")] or ["recipes/demo.yaml"]
    overrides = [i for i in args.items if not i.endswith(".yaml")]
    records = [measure(r, overrides, args.steps, args.warmup) for r in recipes]
    print(
        f"{'recipe':40s} {'device':28s} {'batch':>5s} {'ms/step':>9s} {'img/s':>9s} {'epoch s':>8s}"
    )
    for r in records:
        print(
            f"{r['recipe']:40s} {r['device'][:28]:28s} {r['batch_size']:5d} {r['ms_per_step']:9.2f}"
            f" {r['images_per_s']:9.0f} {r['epoch_s']:8.1f}"
        )
    write_records("throughput", records, args.out)
    print(json.dumps({"images_per_s": [r["images_per_s"] for r in records]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a training step's time goes: data (sampling + augmentation), the trainer's step on a fixed
batch, a bare model step, and the whole loop, per precision.

    python benchmarks/step_breakdown.py [RECIPE] [--steps 20] [--warmup 5] [--precisions fp32,bf16] [key=value ...]

``bare`` is forward + cross-entropy + backward + SGD of the same model on one fixed batch with none of
the trainer around it (the ceiling); ``step`` is the trainer's step function on that batch (its
autocast, fp32 loss, channels-last copy); ``data`` draws batches from the trainer's device loader
only; ``loop`` is both, as the trainer runs them. loop - step - data is what the loop adds (syncs,
Python). Writes JSON (device, commit, date, cpu flags) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded
from records import write_records  # noqa: E402
from throughput import training_parts  # noqa: E402

from longtail import runtime


def _time(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Milliseconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps * 1e3


def measure(recipe: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    cfg, device, parts = training_parts(recipe, overrides)
    model, loader, step = parts.model, parts.loader, parts.step
    model.train()

    def forever() -> Iterator[Any]:
        while True:
            yield from loader

    stream = forever()
    fixed = next(stream)
    lr = cfg.optim.lr
    amp = runtime.autocast_dtype(cfg.train, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    x_bare = fixed[0].contiguous(memory_format=torch.channels_last)

    def bare() -> None:
        with runtime.autocast(amp, device):
            logits = model(x_bare)
        loss = F.cross_entropy(logits.float(), fixed[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def data_only() -> None:
        next(stream)

    def loop() -> None:
        step(next(stream), lr)

    ms = {
        "bare": _time(bare, steps, warmup, device),
        "step": _time(lambda: step(fixed, lr), steps, warmup, device),
        "data": _time(data_only, steps, warmup, device),
        "loop": _time(loop, steps, warmup, device),
    }
    batch = cfg.train.batch_size
    return {
        "recipe": recipe,
        "overrides": overrides,
        "precision": cfg.train.precision,
        "autocast": str(amp),
        "batch_size": batch,
        "ms": {k: round(v, 2) for k, v in ms.items()},
        "images_per_s": {k: round(batch / v * 1e3, 1) for k, v in ms.items()},
        "loop_overhead_ms": round(ms["loop"] - ms["step"] - ms["data"], 2),
        "cpu_native_bf16": runtime.cpu_has_native_bf16(),
        **runtime.provenance(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", help="a recipe (.yaml) and key=value overrides")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=None)
    args, rest = parser.parse_known_args(argv)
    items = [*args.items, *rest]
    recipe = next((i for i in items if i.endswith(".yaml")), "recipes/demo.yaml")
    overrides = [i for i in items if not i.endswith(".yaml")]
    records = [
        measure(recipe, [*overrides, f"train.precision={p}"], args.steps, args.warmup)
        for p in args.precisions.split(",")
    ]
    print(
        f"{'precision':9s} {'bare':>8s} {'step':>8s} {'data':>8s} {'loop':>8s}  ms/step (img/s loop)"
    )
    for r in records:
        m = r["ms"]
        print(f"{r['precision']:9s} {m['bare']:8.1f} {m['step']:8.1f} {m['data']:8.1f} {m['loop']:8.1f}"
              f"  ({r['images_per_s']['loop']:.0f})")  # fmt: skip
    write_records("step-breakdown", records, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to result: our device-resident input pipeline against the published one, same model and loss.

    python benchmarks/speed.py [--steps 50] [--warmup 10] [--workers N] [--data PACK]
                               [--device auto|cpu|cuda] [--compile] [--workloads ce,hybrid]

For each workload (:mod:`workloads`: ``ce`` and ``hybrid``), two pipelines feed the same freshly
seeded model, loss and SGD step:

* ``reference`` (:mod:`reference_pipeline`): a DataLoader over PIL images with per-image CPU
  transforms in ``--workers`` worker processes (split between the contrastive and the class-balanced
  loader for ``hybrid``), pinned memory, one host-to-device copy per view per step.
* ``ours``: the whole uint8 training set on the device, IndexSampler batches (random; class-balanced
  for hybrid's CE view), BatchAugment per view, channels-last, bf16 autocast on CUDA, optionally
  ``--compile``. Both pipelines read their loss once at the end, not per step.

Prints ms/step, images/s (through the backbone), the 200-epoch projection (steps per epoch x 200 x
ms/step), peak GPU memory and the speed-up over the reference of the same run, and writes JSON
records to benchmarks/results/speed-<cpu|gpu>-<stamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, cast

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded

from reference_pipeline import PilViewsDataset, forever, pil_images, pil_pipeline, reference_loader
from workloads import WORKLOADS, StepInput, Workload, build_step, split_workers

from longtail import runtime
from longtail.data.arrays import ImageArrays
from longtail.data.augment import AugmentSpec, BatchAugment
from longtail.data.loader import DeviceLoader, to_device_tensor
from longtail.data.pack import read_pack, read_pack_meta
from longtail.data.samplers import IndexSampler, SamplerMode
from longtail.errors import LongtailError
from longtail.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PACK = Path(".gpu/cifar10_lt_ce_r100.npz")
EPOCHS = 200
SEED = 0


def load_pack(path: Path) -> tuple[ImageArrays, list[float], list[float]]:
    """The pack's decoded training split and its (full training split) channel mean and std."""
    if not path.is_file():
        raise LongtailError(
            f"data pack {path} is missing: build it with "
            "'bash scripts/gpu_prep.sh recipes/cifar10_lt/ce_r100.yaml' or pass --data PACK"
        )
    meta = read_pack_meta(path)
    train = read_pack(path, "train")
    if train.images.shape[-1] != 3:
        raise LongtailError(
            f"data pack {path} is not RGB: the speed benchmark needs CIFAR-like RGB"
        )
    return train, list(meta["mean"]), list(meta["std"])


def device_feed(
    workload: Workload,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    mean: list[float],
    std: list[float],
) -> Generator[StepInput, None, None]:
    """Ours: index gathers on the device-resident uint8 set plus batched augmentation per view."""
    device = images.device

    def generator(offset: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(SEED + offset)

    def loader(sampler: str, specs: list[AugmentSpec], offset: int) -> Iterator[Any]:
        index = IndexSampler(
            labels,
            num_classes,
            workload.batch_size,
            cast(SamplerMode, sampler),
            generator=generator(offset),
        )
        augments = [
            BatchAugment(s, mean, std, generator(offset + 1 + k)) for k, s in enumerate(specs)
        ]
        return forever(DeviceLoader(images, labels, index, augments))

    ce = loader(workload.ce_sampler, [workload.ce_view], 0)
    contrastive = (
        loader("random", list(workload.contrastive_views), 10)
        if workload.contrastive_views
        else None
    )
    while True:
        ce_view, ce_labels = next(ce)
        if contrastive is None:
            yield StepInput([], ce_labels, ce_view, ce_labels)
        else:
            views, y = next(contrastive)
            yield StepInput(views, y, ce_view, ce_labels)


def reference_feed(
    workload: Workload,
    train: ImageArrays,
    mean: list[float],
    std: list[float],
    workers: int,
    device: torch.device,
) -> Generator[StepInput, None, None]:
    """The published pipeline: DataLoaders over PIL images, then a copy of each view to the device."""
    images = pil_images(train.images)
    pin = device.type == "cuda"
    contrastive_workers, ce_workers = split_workers(workload, workers)

    def loader(specs: list[AugmentSpec], sampler: str, n_workers: int, seed: int) -> Iterator[Any]:
        pipelines = [pil_pipeline(s, mean, std) for s in specs]
        dataset = PilViewsDataset(images, train.labels, pipelines)
        return forever(
            reference_loader(dataset, workload.batch_size, sampler, n_workers, pin, seed)
        )

    def put(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=pin)

    ce = loader([workload.ce_view], workload.ce_sampler, ce_workers, SEED)
    contrastive = (
        loader(list(workload.contrastive_views), "random", contrastive_workers, SEED + 1)
        if workload.contrastive_views
        else None
    )
    while True:
        ce_view, ce_labels = (put(t) for t in next(ce))
        if contrastive is None:
            yield StepInput([], ce_labels, ce_view, ce_labels)
        else:
            *views, y = (put(t) for t in next(contrastive))
            yield StepInput(views, y, ce_view, ce_labels)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    feed: Iterator[StepInput],
    step: Callable[[StepInput], torch.Tensor],
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    """ms per step (batch fetch included), mean loss (read once, at the end), peak GPU MiB."""
    for _ in range(warmup):
        step(next(feed))
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    total = torch.zeros((), device=device)
    t0 = time.perf_counter()
    for _ in range(steps):
        total += step(next(feed))
    _sync(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"ms": ms, "loss_mean": float(total) / steps, "peak_mem_mb": peak}


def run_workload(
    workload: Workload, train: ImageArrays, mean: list[float], std: list[float], args: Any
) -> list[dict[str, Any]]:
    """Reference, then ours, on freshly seeded copies of the same model: two records."""
    device: torch.device = args.device
    amp = torch.bfloat16 if device.type == "cuda" else None
    num_classes = len(train.classes)
    results: dict[str, dict[str, Any]] = {}

    step = build_step(workload, num_classes, device, amp, compile=False, seed=SEED)
    feed = reference_feed(workload, train, mean, std, args.workers, device)
    results["reference"] = measure(feed, step, args.steps, args.warmup, device)
    feed.close()  # drops the DataLoaders: their workers exit before ours is timed
    del feed, step
    gc.collect()

    images = to_device_tensor(train.images, device)
    labels = torch.as_tensor(train.labels, dtype=torch.int64, device=device)
    step = build_step(workload, num_classes, device, amp, compile=args.compile, seed=SEED)
    feed = device_feed(workload, images, labels, num_classes, mean, std)
    results["ours"] = measure(feed, step, args.steps, args.warmup, device)
    del feed, step, images, labels
    gc.collect()

    steps_per_epoch = len(train.labels) // workload.batch_size
    contrastive_workers, ce_workers = split_workers(workload, args.workers)
    common = {
        "workload": workload.name,
        "batch_size": workload.batch_size,
        "images_per_step": workload.images_per_step,
        "steps_per_epoch": steps_per_epoch,
        "train_images": len(train.labels),
        "steps": args.steps,
        "warmup": args.warmup,
        "device": runtime.device_name(device),
        "torch": torch.__version__,
        "commit": runtime.git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    records = []
    for pipeline, r in results.items():
        records.append(
            {
                **common,
                "pipeline": pipeline,
                "ms_per_step": round(r["ms"], 3),
                "images_per_s": round(workload.images_per_step / r["ms"] * 1e3, 1),
                "epoch200_s": round(steps_per_epoch * EPOCHS * r["ms"] / 1e3, 1),
                "peak_mem_mb": None if r["peak_mem_mb"] is None else round(r["peak_mem_mb"], 1),
                "speedup_vs_reference": round(results["reference"]["ms"] / r["ms"], 3),
                "loss_mean": r["loss_mean"],
                "workers": f"{contrastive_workers}+{ce_workers}"
                if pipeline == "reference"
                else "0",
                "compile": bool(args.compile) and pipeline == "ours",
            }
        )
    return records


def print_table(records: list[dict[str, Any]]) -> None:
    print(
        f"{'workload':9s} {'pipeline':10s} {'ms/step':>9s} {'img/s':>9s} {'200 ep':>9s}"
        f" {'peak MiB':>9s} {'speedup':>8s}   {records[0]['device'] if records else ''}"
    )
    for r in records:
        peak = "None" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        hours = r["epoch200_s"] / 3600
        print(
            f"{r['workload']:9s} {r['pipeline']:10s} {r['ms_per_step']:9.1f} {r['images_per_s']:9.0f}"
            f" {hours:8.2f}h {peak:>9s} {r['speedup_vs_reference']:7.2f}x"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--workers", type=int, default=min(15, os.cpu_count() or 1))
    parser.add_argument("--data", type=Path, default=DEFAULT_PACK)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model of ours")
    parser.add_argument("--workloads", default="ce,hybrid", help="comma list of ce, hybrid")
    parser.add_argument("--batch-size", type=int, default=None, help="override (smoke tests)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise LongtailError(
            f"--workloads {args.workloads!r} is invalid: use a comma list of ce, hybrid"
        )
    if args.steps < 1 or args.warmup < 0 or args.workers < 0:
        raise LongtailError("--steps must be >= 1 and --warmup, --workers >= 0: fix the option")
    args.names = names
    args.device = runtime.resolve_device(args.device)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train, mean, std = load_pack(args.data)
    records: list[dict[str, Any]] = []
    for name in args.names:
        workload = WORKLOADS[name]
        if args.batch_size is not None:
            workload = workload.resized(args.batch_size)
        if workload.batch_size > len(train.labels):
            raise LongtailError(
                f"batch {workload.batch_size} exceeds the pack's {len(train.labels)} training "
                "images: use a bigger pack or --batch-size"
            )
        records += run_workload(workload, train, mean, std, args)
    print_table(records)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    kind = "gpu" if args.device.type == "cuda" else "cpu"
    out = args.out or RESULTS / f"speed-{kind}-{stamp}.json"
    atomic_write_json(out, records)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LongtailError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

"""The streaming loader on this machine: images/s by worker count, host memory, and memory estimates.

    python benchmarks/stream_loader.py [--images 512] [--workers 0,1,2] [--batch 64] [--size 224]
                                       [--side 500x375] [--model resnet50 --device cuda
                                       --steps 30 --epoch] [--out FILE]

1. Writes ``--images`` JPEGs of ImageNet's typical size (500 x 375, quality 90, smooth photo-like
   content, ~40-110 KB) in a temporary folder, and streams one epoch of RandomResizedCrop(224) +
   flip + colour jitter batches (the ImageNet-LT recipe's training view) through
   :class:`longtail.data.stream.StreamLoader` with each worker count, with and without Pillow's
   draft mode: images/s, and images/s per worker.
2. Host memory flat in the dataset size: the loader's memory (main process + workers, proportional
   set size, so pages the forked workers share count once, near the end of an epoch) for a list of ``--images`` files and for one 100x as long (the same
   files listed over and over, one batch-count the same: the list is all that grows).
3. The memory each large-scale set needs at 224 px: the device path's uint8 copy (train + test,
   and about twice that while decoding) against the streaming path's in-flight batches.

4. With ``--model`` (the GPU check of the queue): the model's training step (bf16 autocast,
   channels-last, SGD) fed by the streaming loader against the same step on a device-resident
   uint8 batch (no decoding): images/s side by side; ``--epoch`` adds one streamed epoch over all
   ``--images`` (115,846 for an ImageNet-LT-sized set).

Writes JSON (device, commit, date) to benchmarks/results/stream-loader-<cpu|gpu>-<stamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded
from records import write_records  # noqa: E402

from longtail import runtime
from longtail.data.augment import AugmentSpec, BatchAugment
from longtail.data.samplers import IndexSampler
from longtail.data.stream import CropSpec, StreamLoader
from longtail.data.stream_setup import GIB, IMAGENET_MEAN, IMAGENET_STD, device_bytes

# (train, val, test) images of the published splits
SETS = {
    "ImageNet-LT": (115_846, 20_000, 50_000),
    "iNaturalist 2018": (437_513, 0, 24_426),
    "Places-LT": (62_500, 7_300, 36_500),
}


def _write_jpeg(job: tuple[Path, int, int, int]) -> Path:
    folder, i, width, height = job
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = i * 0.37
    r = 127 + 110 * np.sin(x / (23 + i % 17) + phase) * np.cos(y / 41.0)
    g = 127 + 110 * np.sin((x + y) / (57 + i % 13) - phase)
    b = 127 + 110 * np.cos(np.hypot(x - width * 0.3, y - height * 0.6) / (19 + i % 7))
    noise = np.random.RandomState(i).randint(-12, 13, (height, width, 3))
    pixels = (np.stack([r, g, b], -1) + noise).clip(0, 255).astype(np.uint8)
    path = folder / f"img_{i:06d}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def write_jpegs(folder: Path, n: int, width: int, height: int, processes: int = 1) -> list[Path]:
    """``n`` photo-like JPEGs (gradients, waves, per-image phase, noise) of ``width x height``."""
    jobs = [(folder, i, width, height) for i in range(n)]
    if processes <= 1 or n < 2048:  # a pool pays off only for many files
        return [_write_jpeg(job) for job in jobs]
    from multiprocessing import Pool

    with Pool(processes) as pool:
        return pool.map(_write_jpeg, jobs, chunksize=64)


def _pss_mb(pids: list[int]) -> float:
    """Proportional set size of the processes together (shared pages counted once, split)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _children() -> list[int]:
    me = os.getpid()
    path = Path(f"/proc/{me}/task/{me}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def epoch(paths: list[Path], workers: int, batch: int, size: int, draft: bool,
          batches: int | None = None) -> dict[str, Any]:  # fmt: skip
    """One epoch (or ``batches`` batches) of the recipe's training view: seconds, images/s, RSS."""
    labels = torch.arange(len(paths)) % 10
    sampler = IndexSampler(labels, 10, batch, generator=torch.Generator().manual_seed(0),
                           max_batches=batches)  # fmt: skip
    jitter = AugmentSpec(crop="none", flip=False, jitter=(0.4, 0.4, 0.4, 0.0), jitter_p=1.0)
    augment = BatchAugment(jitter, IMAGENET_MEAN, IMAGENET_STD, torch.Generator().manual_seed(1))
    loader = StreamLoader(paths, labels, sampler, [augment], CropSpec(size=size, draft=draft),
                          device=torch.device("cpu"), seed=0, workers=workers)  # fmt: skip
    seen, pss = 0, 0.0
    start = time.perf_counter()
    for k, (x, _) in enumerate(loader):
        seen += x.shape[0]
        if k == len(loader) - 2:  # workers alive, prefetch queues full
            pss = _pss_mb([os.getpid(), *_children()])
    seconds = time.perf_counter() - start
    return {"workers": workers, "draft": draft, "images": seen, "seconds": round(seconds, 3),
            "images_per_s": round(seen / seconds, 1),
            "images_per_s_per_worker": round(seen / seconds / max(workers, 1), 1),
            "pss_mb": round(pss, 1)}  # fmt: skip


def model_steps(paths: list[Path], name: str, device: torch.device, workers: int, batch: int,
                size: int, steps: int, epoch_all: bool) -> dict[str, Any]:  # fmt: skip
    """images/s of ``name``'s training step fed by streaming against a device-resident batch."""
    from longtail.models import create_model

    model = create_model(name, 1000).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mean = torch.tensor(IMAGENET_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=device)[None, :, None, None]

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(batches: Any, warmup: int = 5) -> tuple[float, int]:
        seen, start = 0, 0.0
        for k, (x, y) in enumerate(batches):
            if k == warmup:
                sync()
                start, seen = time.perf_counter(), 0
            step(x, y)
            seen += x.shape[0]
        sync()
        return seen / (time.perf_counter() - start), seen

    resident = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    on_device, _ = timed(
        ((resident.float().div(255) - mean) / std, labels) for _ in range(steps + 5)
    )

    def streamed(max_batches: int | None) -> StreamLoader:
        targets = torch.arange(len(paths)) % 1000
        sampler = IndexSampler(targets, 1000, batch, generator=torch.Generator().manual_seed(0),
                               max_batches=max_batches)  # fmt: skip
        spec = AugmentSpec(crop="none", flip=False, jitter=(0.4, 0.4, 0.4, 0.0), jitter_p=1.0)
        augment = BatchAugment(spec, IMAGENET_MEAN, IMAGENET_STD,
                               torch.Generator(device=device).manual_seed(1))  # fmt: skip
        return StreamLoader(paths, targets, sampler, [augment], CropSpec(size=size),
                            device=device, seed=0, workers=workers)  # fmt: skip

    stream, _ = timed(streamed(steps + 5))
    out: dict[str, Any] = {"model": name, "batch": batch, "workers": workers,
                           "device_resident_images_per_s": round(on_device, 1),
                           "streamed_images_per_s": round(stream, 1)}  # fmt: skip
    if epoch_all:
        start = time.perf_counter()
        _, seen = timed(streamed(None), warmup=0)
        out |= {"epoch_images": seen, "epoch_s": round(time.perf_counter() - start, 1)}
    return out


def estimates(size: int, batch: int, workers: int) -> list[dict[str, Any]]:
    """Per set: GiB the device path holds (and peaks at while decoding), and the stream's."""
    in_flight = (workers * 4 + 2) * batch * device_bytes(1, size)  # prefetch 4 a worker + 2 live
    rows = []
    for name, (train, val, test) in SETS.items():
        held = device_bytes(train + test, size)
        rows.append({"set": name, "train": train, "val": val, "test": test,
                     "device_path_gib": round(held / GIB, 1),
                     "device_path_peak_gib": round(2 * held / GIB, 1),
                     "stream_path_gib": round(in_flight / GIB, 2)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--side", default="500x375")
    parser.add_argument("--model", default=None, help="e.g. resnet50: time its step on both paths")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epoch", action="store_true", help="with --model: one streamed epoch")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.side.split("x"))
    workers = [int(w) for w in args.workers.split(",")]
    device = torch.device(args.device)
    torch.set_num_threads(1)  # the main process only uploads, jitters and normalises
    training: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images, width, height, processes=os.cpu_count() or 1)
        kib = sum(p.stat().st_size for p in paths[:256]) / min(len(paths), 256) / 1024
        if args.model:
            training = model_steps(paths, args.model, device, max(workers), args.batch,
                                   args.size, args.steps, args.epoch)  # fmt: skip
            speed, flat = [], []
        else:
            speed = [
                epoch(paths, w, args.batch, args.size, d) for w in workers for d in (True, False)
            ]
            # the same number of batches from a list 100x as long: only the list grows
            steps = max(2, args.images // args.batch)
            flat = [epoch(paths * k, max(workers), args.batch, args.size, True, steps)
                    | {"listed": len(paths) * k} for k in (1, 100)]  # fmt: skip
    record = {
        "benchmark": "stream-loader",
        "device": runtime.device_name(device),
        "cpus": os.cpu_count(),
        "commit": runtime.git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "jpeg": {"width": width, "height": height, "mean_kib": round(kib, 1), "quality": 90},
        "crop": args.size,
        "batch": args.batch,
        "throughput": speed,
        "host_memory_flat": flat,
        "memory_estimates": estimates(args.size, args.batch, max(workers)),
        "model_step": training,
    }
    if training is not None:
        print(" ".join(f"{k}={v}" for k, v in training.items()))
    print(f"{'workers':>7} {'draft':>5} {'img/s':>8} {'img/s/worker':>12} {'PSS MB':>8}")
    for r in speed:
        print(f"{r['workers']:>7} {r['draft']!s:>5} {r['images_per_s']:>8} "
              f"{r['images_per_s_per_worker']:>12} {r['pss_mb']:>8}")  # fmt: skip
    for r in flat:
        print(f"list of {r['listed']:>7} files: PSS {r['pss_mb']} MB")
    print(f"{'set':<18} {'device GiB':>10} {'peak GiB':>9} {'stream GiB':>10}")
    for r in record["memory_estimates"]:
        print(f"{r['set']:<18} {r['device_path_gib']:>10} {r['device_path_peak_gib']:>9} "
              f"{r['stream_path_gib']:>10}")  # fmt: skip
    write_records("stream-loader", [record], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The streaming loader on this machine: images/s by worker count, host memory, and memory estimates.

    python benchmarks/stream_loader.py [--images 512] [--workers 0,1,2] [--batch 64] [--size 224]
                                       [--side 500x375] [--out FILE]

1. Writes ``--images`` JPEGs of ImageNet's typical size (500 x 375, quality 90, smooth photo-like
   content, ~40-110 KB) in a temporary folder, and streams one epoch of RandomResizedCrop(224) +
   flip + colour jitter batches (the ImageNet-LT recipe's training view) through
   :class:`longtail.data.stream.StreamLoader` with each worker count, with and without Pillow's
   draft mode: images/s, and images/s per worker.
2. Host memory flat in the dataset size: the loader's resident memory (main process + workers, RSS
   at the end of an epoch) for a list of ``--images`` files and for one 100x as long (the same
   files listed over and over, one batch-count the same: the list is all that grows).
3. The memory each large-scale set needs at 224 px: the device path's uint8 copy (train + test,
   and about twice that while decoding) against the streaming path's in-flight batches.

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
from longtail.train.stream_setup import GIB, IMAGENET_MEAN, IMAGENET_STD, device_bytes

# (train, val, test) images of the published splits
SETS = {
    "ImageNet-LT": (115_846, 20_000, 50_000),
    "iNaturalist 2018": (437_513, 0, 24_426),
    "Places-LT": (62_500, 7_300, 36_500),
}


def write_jpegs(folder: Path, n: int, width: int, height: int) -> list[Path]:
    """``n`` photo-like JPEGs (gradients, waves, per-image phase) of ``width x height``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(n):
        phase = i * 0.37
        r = 127 + 110 * np.sin(x / (23 + i % 17) + phase) * np.cos(y / 41.0)
        g = 127 + 110 * np.sin((x + y) / (57 + i % 13) - phase)
        b = 127 + 110 * np.cos(np.hypot(x - width * 0.3, y - height * 0.6) / (19 + i % 7))
        noise = np.random.RandomState(i).randint(-12, 13, (height, width, 3))
        pixels = (np.stack([r, g, b], -1) + noise).clip(0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
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
    seen, rss = 0, 0.0
    start = time.perf_counter()
    for k, (x, _) in enumerate(loader):
        seen += x.shape[0]
        if k == len(loader) - 2:  # workers alive, prefetch queues full
            rss = _rss_mb([os.getpid(), *_children()])
    seconds = time.perf_counter() - start
    return {"workers": workers, "draft": draft, "images": seen, "seconds": round(seconds, 3),
            "images_per_s": round(seen / seconds, 1),
            "images_per_s_per_worker": round(seen / seconds / max(workers, 1), 1),
            "rss_mb": round(rss, 1)}  # fmt: skip


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
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.side.split("x"))
    workers = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(1)  # the main process only uploads, jitters and normalises
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images, width, height)
        kib = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        speed = [epoch(paths, w, args.batch, args.size, d) for w in workers for d in (True, False)]
        # the same number of batches from a list 100x as long: only the list grows
        steps = max(2, args.images // args.batch)
        flat = [epoch(paths * k, max(workers), args.batch, args.size, True, steps)
                | {"listed": len(paths) * k} for k in (1, 100)]  # fmt: skip
    record = {
        "benchmark": "stream-loader",
        "device": runtime.device_name(torch.device("cpu")),
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
    }
    print(f"{'workers':>7} {'draft':>5} {'img/s':>8} {'img/s/worker':>12} {'RSS MB':>8}")
    for r in speed:
        print(f"{r['workers']:>7} {r['draft']!s:>5} {r['images_per_s']:>8} "
              f"{r['images_per_s_per_worker']:>12} {r['rss_mb']:>8}")  # fmt: skip
    for r in flat:
        print(f"list of {r['listed']:>7} files: RSS {r['rss_mb']} MB")
    print(f"{'set':<18} {'device GiB':>10} {'peak GiB':>9} {'stream GiB':>10}")
    for r in record["memory_estimates"]:
        print(f"{r['set']:<18} {r['device_path_gib']:>10} {r['device_path_peak_gib']:>9} "
              f"{r['stream_path_gib']:>10}")  # fmt: skip
    write_records("stream-loader", [record], args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

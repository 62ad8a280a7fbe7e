"""Peak memory and time of one forward+backward of SupCon vs PSC vs MPSC.

    python benchmarks/contrastive_memory.py [--device cpu|cuda] [--quick]

Two sweeps, 128-d features, two views per image (2N anchors for SupCon, as the Hybrid branch uses):
batch size N = 256 .. 4096 at 100 classes, and class count C = 10 .. 8,142 (iNaturalist 2018) at
N = 512. The Hybrid paper's claim to check: PSC's memory is O(N * C) and does not grow with the
number of positives per anchor, while SupCon's is O(N^2).

Memory on GPU: ``torch.cuda.max_memory_allocated`` above the inputs. On CPU: the rise of the peak
resident set size (``ru_maxrss``) of a fresh process running only that step, so each cell runs in
its own subprocess. Writes JSON records (loss, batch, classes, ms_per_step, peak_mem_mb, device,
torch, commit, date) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 128


def make_loss(name: str, classes: int) -> torch.nn.Module:
    from longtail.losses import MPSCLoss, PSCLoss, SupConLoss

    if name == "SupCon":
        return SupConLoss(temperature=0.1)
    if name == "PSC":
        return PSCLoss(classes, DIM, temperature=0.1)
    return MPSCLoss(classes, DIM, num_prototypes=4, temperature=0.1)


def one_cell(name: str, batch: int, classes: int, device: str, repeats: int) -> dict[str, Any]:
    """Run in a fresh process: time and peak memory of forward+backward."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    loss_fn = make_loss(name, classes).to(dev)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    views = 2 if name == "SupCon" else 1  # prototype losses need no second view
    features = torch.randn(views * batch, DIM, generator=gen).to(dev).requires_grad_()
    labels = labels.repeat(views).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = loss_fn(features, labels)
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        features.grad = None
    saved = saved_tensor_bytes(loss_fn, features, labels)
    if dev.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:  # ru_maxrss is in KiB on Linux
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {
        "loss": name,
        "batch": batch,
        "anchors": views * batch,
        "classes": classes,
        "ms_per_step": round(1e3 * sorted(times)[len(times) // 2], 3),
        "peak_mem_mb": round(peak_mb, 1),
        "saved_for_backward_mb": round(saved / 2**20, 2),
    }


def saved_tensor_bytes(
    loss_fn: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor
) -> int:
    """Bytes autograd keeps for backward (distinct storages): a device-independent memory measure."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(features, labels)
    return sum(seen.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small sweep (tests)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cell", nargs=3, help=argparse.SUPPRESS)  # name batch classes (child)
    args = parser.parse_args(argv)
    if args.cell:
        name, batch, classes = args.cell[0], int(args.cell[1]), int(args.cell[2])
        print(json.dumps(one_cell(name, batch, classes, args.device, args.repeats)))
        return 0
    batches = [64, 128] if args.quick else [256, 512, 1024, 2048, 4096]
    class_counts = [10, 100] if args.quick else [10, 100, 1000, 8142]
    cells = [(b, 100) for b in batches] + [(batches[1], c) for c in class_counts]
    records = []
    for batch, classes in dict.fromkeys(cells):
        for name in ("SupCon", "PSC", "MPSC"):
            cmd = [sys.executable, __file__, "--cell", name, str(batch), str(classes)]
            cmd += ["--device", args.device, "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            records.append(json.loads(out.strip().splitlines()[-1]))
    from longtail.runtime import git_commit

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    stamp = dt.datetime.now(dt.UTC)
    for r in records:
        r.update(device=device, torch=torch.__version__, commit=git_commit())
        r["date"] = stamp.isoformat(timespec="seconds")
    head = f"{'loss':7s} {'batch':>6s} {'anchors':>8s} {'classes':>8s} {'ms/step':>9s}"
    print(head + f" {'peak MB':>9s} {'saved MB':>9s}")
    for r in records:
        print(
            f"{r['loss']:7s} {r['batch']:6d} {r['anchors']:8d} {r['classes']:8d}"
            f" {r['ms_per_step']:9.2f} {r['peak_mem_mb']:9.1f} {r['saved_for_backward_mb']:9.2f}"
        )
    kind = "gpu" if args.device.startswith("cuda") else "cpu"
    out_path = (
        args.out or RESULTS / f"contrastive-memory-{kind}-{stamp.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

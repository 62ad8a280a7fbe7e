"""What data parallelism costs per step: W ranks under torchrun against one plain process.

    python benchmarks/ddp_overhead.py [RECIPE] [--ranks 2] [--threads 2] [--steps 20] [--warmup 5]
                                      [--out FILE] [key=value ...]

Times the trainer's own step (sharded loader, GatheredBatchNorm / SyncBatchNorm, DDP, the
optimiser) on the global batch ``train.batch_size``:

* ``plain``: one process, no process group, ``--threads`` threads (the whole machine);
* ``ddp``: ``torchrun --nproc_per_node=RANKS`` of this script, ``threads / ranks`` threads each
  on a CPU (the same cores, split), one GPU each on a GPU machine. With ``--ranks 1`` on a GPU it
  is the overhead DDP adds to one device (the queue's check for issue 14).

On a CPU with two cores, ``2 ranks x 1 thread`` against ``1 rank x 2 threads`` is what the CPU
tests exercise, not a speed-up: the same cores do the same arithmetic plus the gathers, the
all-reduce and each rank's augmentation of the whole global batch. Multi-GPU scaling is not
measured here (one GPU at most is lent to this project). Writes JSON (device, commit, date) to
benchmarks/results/ddp-overhead-<cpu|gpu>-<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded
from records import write_records  # noqa: E402

from longtail import launch, runtime
from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.io import atomic_write_json
from longtail.train.build import build_training


def time_steps(recipe: str, overrides: list[str], steps: int, warmup: int) -> dict[str, Any]:
    """ms per global-batch step of the trainer's parts in this process (a rank or the plain run)."""
    cfg = load_config(recipe, [*overrides, "train.progress=false"])
    runtime.set_threads(cfg.train.threads)
    device, shard = launch.start(runtime.resolve_device(cfg.train.device))
    data = prepare_data(cfg.data, device)
    parts = build_training(cfg, data, device, shard)
    parts.start_epoch(cfg.train, 0, device)
    parts.model.train()

    def batches():  # type: ignore[no-untyped-def]
        while True:
            yield from parts.loader

    stream = batches()
    for _ in range(warmup):
        parts.step(next(stream), cfg.optim.lr)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    loss = torch.zeros((), device=device)
    for _ in range(steps):
        loss += parts.step(next(stream), cfg.optim.lr)
    loss = launch.mean_over_ranks(loss, shard)  # a collective: every rank has finished its steps
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    return {
        "ms_per_step": round(ms, 2),
        "images_per_s": round(cfg.train.batch_size / ms * 1e3, 1),
        "batch_size": cfg.train.batch_size,
        "ranks": shard.world,
        "threads_per_rank": torch.get_num_threads() if device.type == "cpu" else None,
        "final_loss_mean": round(float(loss) / steps, 4),
        **runtime.provenance(device),
    }


def _ddp(recipe: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rank0.json"
        threads = max(1, args.threads // args.ranks)
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={args.ranks}", __file__, "--worker", str(out), recipe,
                *overrides, f"train.threads={threads}", f"--steps={args.steps}",
                f"--warmup={args.warmup}"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with (Path(folder) / "log").open("w") as log:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
        if done.returncode != 0:
            tail = (Path(folder) / "log").read_text()[-2000:]
            raise SystemExit(f"the torchrun side failed (exit {done.returncode}):\n{tail}")
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", help="a recipe (.yaml) and key=value overrides")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)  # key=value may follow the options
    unknown = [r for r in rest if r.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    items = [*args.items, *rest]
    recipe = next((i for i in items if i.endswith(".yaml")), "recipes/demo.yaml")
    overrides = [i for i in items if not i.endswith(".yaml")]
    if args.worker is not None:  # one rank under torchrun: rank 0 reports
        record = time_steps(recipe, overrides, args.steps, args.warmup)
        if int(os.environ.get("RANK", "0")) == 0:
            atomic_write_json(args.worker, record)
        launch.stop()
        return 0
    plain = time_steps(recipe, [*overrides, f"train.threads={args.threads}"], args.steps,
                       args.warmup)  # fmt: skip
    ddp = _ddp(recipe, overrides, args)
    records = [{"setup": "plain", **plain}, {"setup": "ddp", **ddp}]
    for r in records:
        r.update(recipe=recipe, overrides=overrides)
    overhead = ddp["ms_per_step"] / plain["ms_per_step"]
    print(f"{'setup':6s} {'ranks':>5s} {'threads':>7s} {'ms/step':>9s} {'img/s':>8s}")
    for r in records:
        print(f"{r['setup']:6s} {r['ranks']:5d} {r['threads_per_rank'] or '-':>7} "
              f"{r['ms_per_step']:9.1f} {r['images_per_s']:8.0f}")  # fmt: skip
    print(f"ddp / plain time per step: {overhead:.2f}x")
    write_records("ddp-overhead", records, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

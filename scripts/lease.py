"""Prepare the next GPU lease: build its carry and print the one device command that runs it.

    .venv/bin/python scripts/lease.py --priority 1            # lease 1: the CIFAR-10-LT r=100 column
    .venv/bin/python scripts/lease.py --only c100-r100-ce c100-r100-ldam-drw --jobs 2

It reads the queue (reports/results/owed.yaml), picks the owed entries of that priority that run on a
GPU (longtail.queue.lease), downloads the wheels the device image lacks into .whl/ (Python 3.12),
writes one data pack per distinct training subset into .gpu/ (named as ``longtail queue run
--packs`` looks them up), checks that the work tree and the carry fit the device's 64 MiB, and
prints the device tool's call: its ``carry``, ``timeout_s`` and a command of at most 2,000
characters that installs the wheels and runs ``longtail queue run`` with the bundle written to $OUT.
Back here: ``longtail queue merge DIR`` on the folder the files came back to, then commit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from longtail.errors import LongtailError  # noqa: E402
from longtail.queue.lease import CALL_LIMIT_S, carry_bytes, plan_lease  # noqa: E402
from longtail.queue.spec import load_queue  # noqa: E402

WHEELS = ("omegaconf==2.4.0", "kornia==0.9.0", "kornia-rs==0.2.0")  # absent from the device image
CARRY_LIMIT = 64 * 2**20


def _download_wheels(into: Path) -> None:
    into.mkdir(exist_ok=True)
    for wheel in WHEELS:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "-d", str(into), wheel],
            check=True,
        )  # fmt: skip


def _tree_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return [ROOT / n for n in names if n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", default="reports/results/owed.yaml")
    pick = parser.add_mutually_exclusive_group(required=True)
    pick.add_argument("--priority", type=int, help="every owed GPU entry of this priority")
    pick.add_argument("--only", nargs="+", help="these entry ids")
    parser.add_argument("--jobs", type=int, default=None, help="side by side (default: all)")
    parser.add_argument("--timeout", type=int, default=CALL_LIMIT_S, help="the device call's limit")
    ns = parser.parse_args()

    from longtail.train.pack_recipe import build_pack

    try:
        queue = load_queue(ROOT / ns.queue, root=ROOT)
        plan = plan_lease(queue, ns.queue, ns.priority, ns.only, ns.jobs, ns.timeout)
    except LongtailError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    whl, gpu = ROOT / ".whl", ROOT / ".gpu"
    _download_wheels(whl)
    gpu.mkdir(exist_ok=True)
    for old in gpu.glob("*.npz"):  # carry only what this lease reads
        old.unlink()
    for name, (data, whole) in plan.packs.items():
        summary = build_pack(data, gpu / name, whole=whole)
        print(f"pack {name}: {summary['bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    total = carry_bytes([*_tree_files(), whl, gpu])
    print(f"tree + carry: {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f}", file=sys.stderr)
    if total > CARRY_LIMIT:
        print(
            "error: over the 64 MiB the device takes: lease fewer entries (--only)", file=sys.stderr
        )
        return 2
    call = {"carry": [".whl", ".gpu"], "timeout_s": plan.timeout_s, "command": plan.command}
    print(json.dumps(call, indent=1))
    print(f"then: longtail queue merge <files_at>   ({len(plan.entries)} entries, {plan.jobs} at a"
          " time)", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

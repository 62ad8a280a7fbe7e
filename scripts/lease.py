"""Prepare the next GPU lease: build its carry and print the one device command that runs it.

    .venv/bin/python scripts/lease.py --priority 1            # lease 1: the CIFAR-10-LT r=100 column
    .venv/bin/python scripts/lease.py --only c100-r100-ce c100-r100-ldam-drw --jobs 2

It reads the queue (reports/results/owed.yaml), picks the owed entries of that priority that run on a
GPU, downloads the wheels the device image lacks into .whl/ (Python 3.12), writes one data pack per
distinct training subset into .gpu/ (named as ``longtail queue run --packs`` looks them up), checks
that the work tree and the carry fit the device's 64 MiB, and prints the device tool's call: its
``carry``, its ``timeout_s`` and a command of at most 2,000 characters that installs the wheels and
runs ``longtail queue run`` with the bundle written to $OUT. Back here: ``longtail queue merge DIR``
on the folder the files came back to, then commit reports/results/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from longtail.config import load_config  # noqa: E402
from longtail.queue.commands import entry_config, pack_name  # noqa: E402
from longtail.queue.spec import Entry, load_queue  # noqa: E402

WHEELS = ("omegaconf==2.4.0", "kornia==0.9.0", "kornia-rs==0.2.0")  # absent from the device image
CARRY_LIMIT = 64 * 2**20
COMMAND_LIMIT = 2000
CALL_LIMIT_S = 600  # one device command
STARTUP_S = 45  # install the wheels, import torch, decode the packs (headroom inside the call)


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


def _pack_source(entry: Entry) -> tuple[str, object, bool]:
    """(pack file name, the data config to pack, whole split?) of an entry."""
    if entry.kind == "study":
        from longtail.studies.spec import load_spec

        recipe = next(iter(load_spec(entry.recipe).methods.values()))
        cfg = load_config(recipe)
        return pack_name(cfg, whole=True), cfg.data, True
    cfg = entry_config(entry)
    return pack_name(cfg), cfg.data, False


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _tree_bytes() -> int:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
        check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    return sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())


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

    queue = load_queue(ROOT / ns.queue, root=ROOT)
    owed = [e for e in queue.ordered() if e.status == "owed" and e.estimate_s("h200") is not None]
    chosen = [e for e in owed if (e.id in ns.only if ns.only else e.priority == ns.priority)]
    if not chosen:
        print("no owed GPU entry matches: check --priority / --only", file=sys.stderr)
        return 2
    whl, gpu = ROOT / ".whl", ROOT / ".gpu"
    _download_wheels(whl)
    gpu.mkdir(exist_ok=True)
    for old in gpu.glob("*.npz"):  # carry only what this lease reads
        old.unlink()
    packs: dict[str, tuple[object, bool]] = {}
    for entry in chosen:
        if entry.kind == "benchmark" and "{pack}" not in (entry.command or ""):
            continue  # a benchmark that reads no data
        name, data, whole = _pack_source(entry)
        packs.setdefault(name, (data, whole))
    for name, (data, whole) in packs.items():
        summary = build_pack(data, gpu / name, whole=whole)  # type: ignore[arg-type]
        print(f"pack {name}: {summary['bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    total = _tree_bytes() + _size(whl) + _size(gpu)
    print(f"tree + carry: {total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f}", file=sys.stderr)
    if total > CARRY_LIMIT:
        print("over the 64 MiB the device takes: lease fewer entries (--only)", file=sys.stderr)
        return 2
    budget = ns.timeout - STARTUP_S
    jobs = ns.jobs or len(chosen)
    command = (
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade"
        " --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 &&"
        f" python3 -m longtail.cli queue run {ns.queue} --device cuda --jobs {jobs}"
        f" --budget {budget} --out $OUT --runs /tmp/runs --packs .gpu --only "
        + " ".join(e.id for e in chosen)
    )
    if len(command) > COMMAND_LIMIT:
        print(f"the command is {len(command)} characters (> 2000): lease fewer", file=sys.stderr)
        return 2
    call = {"carry": [".whl", ".gpu"], "timeout_s": ns.timeout, "command": command}
    print(json.dumps(call, indent=1))
    print(f"then: longtail queue merge <files_at>   ({len(chosen)} entries, {jobs} at a time)",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

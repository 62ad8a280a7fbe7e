"""The main job under each precision: wall time, training time, images/s and top-1, side by side.

    python benchmarks/demo_precision.py [RECIPE] [--precisions fp32,bf16] [--out FILE] [key=value ...]

Trains ``RECIPE`` (default ``recipes/demo.yaml``) once per precision with the same seed, in
temporary run folders, and writes one JSON record per precision (top-1, many/medium/few, train and
wall seconds, mean images/s over the epochs, device, commit, date, whether the CPU has native bf16)
to benchmarks/results/demo-precision-<device>-<stamp>.json. One seed each: a top-1 difference
within a few tenths is seed noise, not precision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however loaded
from records import write_records  # noqa: E402

from longtail import runtime
from longtail.config import load_config
from longtail.train.trainer import train


def measure(recipe: str, precision: str, overrides: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(recipe, [*overrides, f"train.precision={precision}", f"out_dir={out}"])
        run = train(cfg)
        final = json.loads((run / "final.json").read_text())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    device = runtime.resolve_device(cfg.train.device)
    return {
        "recipe": recipe,
        "overrides": overrides,
        "precision": final.get("precision", precision),
        "top1": final["top1"],
        "many": final.get("many"),
        "medium": final.get("medium"),
        "few": final.get("few"),
        "epochs": final["epochs"],
        "train_s": final["train_s"],
        "wall_s": final["wall_s"],
        "images_per_s": round(statistics.mean(e["images_per_s"] for e in epochs), 1),
        "cpu_native_bf16": runtime.cpu_has_native_bf16(),
        **runtime.provenance(device),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="*", help="a recipe (.yaml) and key=value overrides")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    args = parser.parse_args(argv)
    recipe = next((i for i in args.items if i.endswith(".yaml")), "recipes/demo.yaml")
    overrides = [i for i in args.items if not i.endswith(".yaml")]
    records = [measure(recipe, p, overrides) for p in args.precisions.split(",")]
    print(f"{'precision':9s} {'top-1':>6s} {'train s':>8s} {'wall s':>7s} {'img/s':>7s}  device")
    for r in records:
        print(
            f"{r['precision']:9s} {r['top1']:6.2f} {r['train_s']:8.1f} {r['wall_s']:7.1f}"
            f" {r['images_per_s']:7.0f}  {r['device']}"
        )
    write_records("demo-precision", records, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

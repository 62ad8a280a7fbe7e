"""Command line: ``longtail {train,eval,taunorm,data,pack,report,study,queue} ...``.

    longtail train RECIPE.yaml [key=value ...]      train; prints the run folder
    longtail train [RECIPE.yaml] resume=RUN_DIR     continue a run exactly (train.epochs=N extends it)
    longtail eval RUN_DIR [key=value ...]           re-evaluate a run's checkpoint; prints JSON
    longtail taunorm RUN_DIR [key=value ...]        tau-norm: pick tau on a validation split; taunorm.json
    longtail data RECIPE.yaml [key=value ...]       the training index's per-class counts, one JSON line
    longtail pack RECIPE.yaml OUT.npz [--whole] [key=value ...]  LT subset (or whole split) + test
    longtail report RESULTS.json RUN_DIR ...        merge full runs into a results file + markdown table
    longtail study SPEC.yaml [key=value ...]        train (or reuse) a study's runs; results + table + plot
    longtail queue run QUEUE --budget S --jobs K --out DIR [--only ID ...] [--device cpu|cuda]
                           [--resumable] [--runs DIR] [--packs DIR]
                                                    the owed runs that fit S seconds, K side by side
    longtail queue merge BUNDLE [--queue QUEUE]     a queue call's finished runs into the results files

Problems the user can fix are printed as one ``error:`` line (exit status 2), without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from longtail.errors import LongtailError


def _split_recipe(args: list[str]) -> tuple[str | None, list[str]]:
    """The first argument is the recipe unless it is already a key=value override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(args: list[str]) -> None:
    """``longtail train`` (also under ``torchrun``: every rank runs this; rank 0 prints)."""
    from longtail import launch
    from longtail.config import load_config
    from longtail.train.trainer import resume, train

    recipe, overrides = _split_recipe(args)
    runs = [o.split("=", 1)[1] for o in overrides if o.startswith("resume=")]
    if not runs and recipe is None:
        raise LongtailError("longtail train needs a recipe: longtail train recipes/demo.yaml")
    try:
        if runs:
            # The run folder's saved config defines the run; the recipe, if given, is not re-read.
            rest = [o for o in overrides if not o.startswith("resume=")]
            path = resume(runs[-1], rest)
        else:
            path = train(load_config(recipe, overrides))
        if int(os.environ.get("RANK", "0")) == 0:
            print(path)
    finally:
        launch.stop()


def cmd_eval(args: list[str]) -> None:
    from longtail.train.evaluate_run import evaluate_run

    if not args:
        raise LongtailError("longtail eval needs a run folder: longtail eval runs/<run>")
    result = evaluate_run(args[0], args[1:])
    print(json.dumps(result))


def cmd_taunorm(args: list[str]) -> None:
    from longtail.train.evaluate_run import taunorm_run

    if not args:
        raise LongtailError("longtail taunorm needs a run folder: longtail taunorm runs/<run>")
    result = taunorm_run(args[0], args[1:])
    print(
        json.dumps(
            {k: result[k] for k in ("tau", "val_top1_at_tau")}
            | {"test_top1": result["test"]["top1"]}
        )
    )


def cmd_data(args: list[str]) -> None:
    from longtail.config import load_config
    from longtail.train.data_setup import describe_subset

    recipe, overrides = _split_recipe(args)
    cfg = load_config(recipe, overrides)
    print(json.dumps(describe_subset(cfg.data)))


def cmd_pack(args: list[str]) -> None:
    from longtail.config import load_config
    from longtail.train.pack_recipe import build_pack

    whole = "--whole" in args  # the whole training split: runs subset it as the source
    recipe, rest = _split_recipe([a for a in args if a != "--whole"])
    if recipe is None or not rest or "=" in rest[0]:
        raise LongtailError(
            "longtail pack needs a recipe and an output file: longtail pack R.yaml OUT.npz"
            " [--whole]"
        )
    cfg = load_config(recipe, rest[1:])
    print(json.dumps(build_pack(cfg.data, rest[0], whole=whole)))


def cmd_report(args: list[str]) -> None:
    from longtail.report import report

    if len(args) < 2 or not args[0].endswith(".json"):
        raise LongtailError(
            "longtail report needs a results file and run folders:"
            " longtail report reports/results/cifar10_lt.json runs/*"
        )
    print(report(args[1:], Path(args[0])), end="")


def cmd_study(args: list[str]) -> None:
    from longtail.studies.runner import run_study

    if not args or "=" in args[0]:
        raise LongtailError(
            "longtail study needs a spec file: longtail study recipes/studies/sweep.yaml"
        )
    print(run_study(args[0], args[1:]))


def cmd_queue(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="longtail queue", exit_on_error=False)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run the queue's next entries on this device")
    run.add_argument("queue")
    run.add_argument("--budget", type=float, required=True, help="seconds, bundle writing included")
    run.add_argument("--jobs", type=int, default=1, help="trainings side by side")
    run.add_argument("--out", required=True, help="the bundle folder ($OUT on a device call)")
    run.add_argument("--only", nargs="+", default=None, help="these entry ids only")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--runs", default=None, help="run folders (default ~/longtail-runs/queue)")
    run.add_argument("--packs", default=None, help="folder of data packs (scripts/lease.py)")
    run.add_argument(
        "--resumable",
        action="store_true",
        help="also start runs longer than the budget (stopped there, resumed next time)",
    )
    merge = sub.add_parser("merge", help="merge a bundle's finished runs into the results")
    merge.add_argument("bundle")
    merge.add_argument("--queue", default="reports/results/owed.yaml")
    try:
        ns = parser.parse_args(args)
    except (argparse.ArgumentError, SystemExit) as err:
        raise LongtailError(
            f"longtail queue: {err}: use 'longtail queue run QUEUE --budget S --jobs K --out DIR'"
            " or 'longtail queue merge BUNDLE'"
        ) from None
    if ns.action == "run":
        from longtail.queue.runner import run_queue

        summary = run_queue(ns.queue, ns.budget, ns.jobs, ns.out, device=ns.device, only=ns.only,
                            runs=ns.runs, packs=ns.packs, resumable=ns.resumable)  # fmt: skip
        for item in summary["entries"]:
            why = f": {item['reason']}" if item["reason"] else ""
            print(f"{item['id']}: {item['status']}{why}")
        print(f"{summary['finished']} finished in {summary['wall_s']:.0f} s on"
              f" {summary['device_name']}, {summary['jobs']} at a time, MPS {summary['mps']};"
              f" bundle: {ns.out}")  # fmt: skip
    else:
        from longtail.queue.merge import merge_bundle

        for line in merge_bundle(ns.bundle, ns.queue):
            print(line)


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "taunorm": cmd_taunorm,
    "data": cmd_data,
    "pack": cmd_pack,
    "report": cmd_report,
    "study": cmd_study,
    "queue": cmd_queue,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="longtail",
        description="Long-tailed representation and classifier learning.",
        epilog="Overrides are dotted key=value pairs, e.g. optim.lr=0.05 train.epochs=10.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="recipe or run folder, then key=value"
    )
    ns = parser.parse_args(argv)
    if any(a in ("-h", "--help") for a in ns.args):
        print(__doc__)
        return 0
    try:
        COMMANDS[ns.command](list(ns.args))
    except LongtailError as err:
        if not (err.every_rank and os.environ.get("RANK", "0") != "0"):  # one line, not W
            print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before training started", file=sys.stderr)
        return 130
    except OSError as err:  # a file system problem the checks above did not foresee
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: {err.strerror or err}{where}: check the path and its permissions",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``longtail {train,eval,taunorm,data,pack,report,study,queue,config,list} ...``.

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
    longtail config [RECIPE.yaml] [key=value ...]   the resolved config as YAML (what train would run)
    longtail list models|recipes|methods|keys       model names, recipes and study specs, method
                                                    names, every config key with its default
    longtail --version                              prints ``longtail X``

``longtail COMMAND --help`` describes one command: its arguments and an example (``train`` and
``config`` also every config key with its default and choices, generated from
:mod:`longtail.config`). Problems the user can fix are printed as one ``error:`` line (exit
status 2), without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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
            from longtail.summary import run_summary

            final = json.loads((Path(path) / "final.json").read_text())
            print(run_summary(final))  # the short table; the folder's path stays the last line
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
    from longtail.data.setup import describe_subset

    recipe, overrides = _split_recipe(args)
    cfg = load_config(recipe, overrides)
    print(json.dumps(describe_subset(cfg.data)))


def cmd_pack(args: list[str]) -> None:
    from longtail.config import load_config
    from longtail.data.pack_recipe import build_pack

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
    skipped: list[str] = []
    try:
        table = report(args[1:], Path(args[0]), skipped)
    finally:
        for line in skipped:  # what was left out, and why, before the table or the error
            print(f"skipped {line}", file=sys.stderr)
    print(table, end="")


def cmd_study(args: list[str]) -> None:
    from longtail.studies.runner import run_study

    if not args or "=" in args[0]:
        raise LongtailError(
            "longtail study needs a spec file: longtail study recipes/studies/sweep.yaml"
        )
    print(run_study(args[0], args[1:]))


def _predict_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="longtail predict",
        description=textwrap.fill(SUMMARY["predict"], 100),
        epilog=_examples(
            "longtail predict runs/demo-20260101-120000 photo.png --topk 3",
            "longtail predict runs/demo-20260101-120000 photos/ --json > predictions.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (model.safetensors)")
    p.add_argument("target", metavar="IMAGE|FOLDER", help="an image file, or a folder of images")
    p.add_argument("--topk", type=int, default=5, help="classes shown an image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON list of records instead")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--batch-size", type=int, default=256, help="images a forward pass")
    return p


def cmd_predict(args: list[str]) -> None:
    from longtail.deploy.predict import format_predictions, predict_files

    ns = _predict_parser().parse_args(args)  # a bad argument: one line (OneLineParser)
    records = predict_files(ns.run_dir, ns.target, ns.topk, ns.batch_size, ns.device)
    print(json.dumps(records) if ns.json else format_predictions(records))


def _export_parser() -> argparse.ArgumentParser:
    p = _parser("export", _examples("longtail export runs/demo-20260101-120000 --format pt2"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (model.safetensors)")
    p.add_argument(
        "--format",
        default="both",
        choices=["both", "pt2", "onnx"],
        help="model.pt2 (torch.export), model.onnx (needs onnx, onnxscript, onnxruntime), or"
        " both (default: ONNX where its packages are installed)",
    )
    return p


def cmd_export(args: list[str]) -> None:
    from longtail.deploy.export import export_run

    ns = _export_parser().parse_args(args)
    print(json.dumps(export_run(ns.run_dir, ns.format)))


def _queue_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """``longtail queue``'s parser (parses and, with --help, describes) and its two actions'."""
    parser = OneLineParser(
        prog="longtail queue",
        description=textwrap.fill(SUMMARY["queue"], 100),
        epilog=_examples(
            "longtail queue run reports/results/owed.yaml --device cpu --jobs 1 --budget 9000"
            " --out ~/bundle",
            "longtail queue merge ~/bundle",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser(
        "run",
        help="run the queue's next entries on this device",
        description=textwrap.fill(
            "Run the queue's owed entries that fit the budget, K side by side, and write their"
            " finished runs into a bundle folder.",
            100,
        ),
        epilog=_examples(
            "longtail queue run reports/results/owed.yaml --device cpu --jobs 1 --budget 9000"
            " --out ~/bundle --resumable"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("queue", help="the queue file, e.g. reports/results/owed.yaml")
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
    merge = sub.add_parser(
        "merge",
        help="merge a bundle's finished runs into the results",
        description=textwrap.fill(
            "Merge a bundle's finished runs into their results files and tables, and mark their"
            " queue entries done.",
            100,
        ),
        epilog=_examples("longtail queue merge ~/bundle"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    merge.add_argument("bundle", help="the folder a `queue run` wrote (--out)")
    merge.add_argument("--queue", default="reports/results/owed.yaml", help="the queue file")
    return parser, {"run": run, "merge": merge}


def cmd_queue(args: list[str]) -> None:
    parser, _ = _queue_parser()
    ns = parser.parse_args(args)
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
        if summary["interrupted"]:
            raise LongtailError(
                "the queue was interrupted: its running entries stopped with their checkpoints and"
                f" the bundle in {ns.out} holds what finished; the next `longtail queue run` with"
                " the same --runs resumes them"
            )
    else:
        from longtail.queue.merge import merge_bundle

        for line in merge_bundle(ns.bundle, ns.queue):
            print(line)


def cmd_config(args: list[str]) -> None:
    from longtail.config import load_config, to_yaml

    recipe, overrides = _split_recipe(args)
    print(to_yaml(load_config(recipe, overrides)), end="")


LIST_TARGETS = ("models", "recipes", "methods", "keys")


def cmd_list(args: list[str]) -> None:
    if len(args) != 1 or args[0] not in LIST_TARGETS:
        what = (
            f"unknown list target {args[0]!r}"
            if len(args) == 1
            else "longtail list takes one target"
        )
        raise LongtailError(
            f"{what}: use one of {', '.join(LIST_TARGETS)} (e.g. longtail list models)"
        )
    target = args[0]
    if target == "models":
        _list_models()
    elif target == "recipes":
        _list_recipes()
    elif target == "methods":
        _list_methods()
    else:
        from longtail.config_help import format_config_keys

        print(format_config_keys())


def _list_models() -> None:
    from dataclasses import fields

    from longtail.config import ModelConfig
    from longtail.config_help import yaml_value
    from longtail.models.registry import list_models, model_options

    own = {f.name for f in fields(ModelConfig)}  # set by its own key (model.classifier)
    names = list_models()
    width = max(map(len, names))
    for name in names:
        options = {k: v for k, v in model_options(name).items() if k not in own}
        given = ", ".join(f"{k}={yaml_value(v)}" for k, v in options.items())
        print(f"{name:<{width}}  model.kwargs: {given}" if given else name)


def _recipes_folder() -> Path:
    """The repository's recipes folder (a source checkout), else ./recipes."""
    repo = Path(__file__).resolve().parents[2]  # src/longtail/cli.py -> the checkout's root
    for folder in (repo / "recipes", Path.cwd() / "recipes"):
        if folder.is_dir():
            return folder
    raise LongtailError(
        f"no recipes folder: neither {repo / 'recipes'} nor ./recipes exists; run from the"
        " repository root"
    )


def _recipe_files() -> tuple[Path, list[Path], list[Path]]:
    """(recipes folder, train recipes, study specs: files with a top-level ``study:``)."""
    from longtail.recipe_files import read_yaml_mapping

    folder = _recipes_folder()
    recipes: list[Path] = []
    studies: list[Path] = []
    for path in sorted(folder.rglob("*.yaml")):
        (studies if "study" in read_yaml_mapping(path, "recipe") else recipes).append(path)
    return folder, recipes, studies


def _list_recipes() -> None:
    folder, recipes, studies = _recipe_files()
    if folder.parent.resolve() != Path.cwd().resolve():
        print(f"# in {folder.parent}")
    print(f"# train recipes ({len(recipes)}): longtail train RECIPE")
    for path in recipes:
        print(path.relative_to(folder.parent).as_posix())
    print(f"# study specs ({len(studies)}): longtail study SPEC")
    for path in studies:
        print(path.relative_to(folder.parent).as_posix())


def _list_methods() -> None:
    from collections import Counter

    from longtail.config import choices
    from longtail.recipe_files import recipe_layers
    from longtail.strategies import registry

    _, recipes, _ = _recipe_files()
    methods: Counter[str] = Counter()
    for path in recipes:
        # the method a recipe runs as, inherited through base: like every other key
        named = [layer["method"] for _, layer in recipe_layers(path) if "method" in layer]
        if named and named[-1] is not None:
            methods[str(named[-1])] += 1
    unnamed = len(recipes) - sum(methods.values())
    print(
        f"# results-table methods (method:), with how many recipes run each;"
        f" {unnamed} recipes name none"
    )
    width = max(map(len, methods), default=0)
    for method in sorted(methods):
        print(f"{method:<{width}}  {methods[method]}")
    print("# strategies (strategy.name), each a module of longtail.strategies")
    registered = registry.methods()
    width = max(map(len, registered))
    for name, entry in registered.items():
        print(f"{name:<{width}}  {entry.summary}".rstrip())
    print("# losses (loss.name)")
    print("\n".join(choices()["loss.name"]))


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "export": cmd_export,
    "taunorm": cmd_taunorm,
    "data": cmd_data,
    "pack": cmd_pack,
    "report": cmd_report,
    "study": cmd_study,
    "queue": cmd_queue,
    "config": cmd_config,
    "list": cmd_list,
}

# one sentence a command: its --help's description and its line in `longtail --help`
SUMMARY = {
    "train": "Train a model from a recipe (defaults <- recipe <- key=value overrides) and print"
    " the run folder.",
    "eval": "Re-evaluate a run's checkpoint on its test split (and re-probe its frozen backbone),"
    " print the result as JSON and write eval.json in the run folder.",
    "predict": "Classify image files with a finished run's model (model.safetensors and"
    " preprocess.json, no training data): print the top-k classes of each image.",
    "export": "Write a finished run's classifier as a torch.export program (model.pt2: uint8 images"
    " in, logits out, normalisation inside) and as ONNX (model.onnx), each checked against eager;"
    " print a JSON summary.",
    "taunorm": "Tau-normalise a run's classifier: choose tau on a balanced validation split, test"
    " once at it, print the result as JSON and write taunorm.json in the run folder.",
    "data": "Print the per-class counts of a recipe's long-tailed training subset as one JSON"
    " line, training nothing.",
    "pack": "Write a recipe's long-tailed training subset (with --whole: the whole training"
    " split) and its test split into one file of encoded images; print a JSON summary.",
    "report": "Merge finished runs into a results file (mean and std over seeds), write its"
    " markdown table beside it and print the table.",
    "study": "Train (or reuse) every run of a study spec, then write its results JSON, table and"
    " plot; print the results file.",
    "queue": "Run the owed-runs queue's entries that fit a time budget on this device, or merge"
    " a finished bundle into the results files.",
    "config": "Print the resolved config of a recipe and overrides as YAML, the config"
    " `longtail train` would run, training nothing.",
    "list": "List the model names, the recipes and study specs, the results-table method names,"
    " or every config key with its default and choices.",
}

_OVERRIDES = (
    "a config override, e.g. optim.lr=0.05 (values are YAML: schedule.milestones=[120,160])"
)


def _examples(*lines: str) -> str:
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {x}" for x in lines)


def _keys_epilog(*examples: str) -> str:
    from longtail.config_help import format_config_keys

    return (
        _examples(*examples)
        + "\n\nconfig keys (key=default  {choices}), each set by a recipe or a key=value override:\n"
        + format_config_keys()
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one :class:`LongtailError` line (the problem, then the usage),
    not a usage block and an exit; ``--help`` is answered by :func:`main` before parsing."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise LongtailError(f"{self.prog}: {message}: use '{usage}'")


def _parser(command: str, epilog: str) -> argparse.ArgumentParser:
    return OneLineParser(
        prog=f"longtail {command}",
        description=textwrap.fill(SUMMARY[command], 100),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _eval_overrides() -> str:
    from longtail.train.evaluate_run import EVAL_OVERRIDABLE

    keys = [k if "." in k else f"{k}.*" for k in EVAL_OVERRIDABLE]
    return f"a change to the run's saved config, only of {', '.join(keys)}"


def _help_parser(command: str, args: list[str]) -> argparse.ArgumentParser:
    """The parser that describes ``longtail COMMAND`` (queue's also parses it)."""
    recipe = "the recipe: a YAML file of what differs from the defaults (base: other.yaml inherits)"
    if command == "train":
        p = _parser(
            command,
            _keys_epilog(
                "longtail train recipes/demo.yaml",
                "longtail train recipes/demo.yaml optim.lr=0.05 train.epochs=30",
                "longtail train resume=runs/demo-20260101-120000 train.epochs=20",
                "torchrun --nproc_per_node=2 -m longtail train recipes/demo.yaml",
            ),
        )
        p.add_argument("recipe", nargs="?", metavar="RECIPE.yaml", help=recipe)
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help=f"{_OVERRIDES}; resume=RUN_DIR continues that run exactly from its last"
            " checkpoint (its saved config, not the recipe; train.epochs=N extends it)",
        )
    elif command == "config":
        p = _parser(
            command,
            _keys_epilog(
                "longtail config recipes/demo.yaml train.epochs=3",
                "longtail config recipes/cifar10_lt/ldam_drw_r100.yaml > resolved.yaml",
            ),
        )
        p.add_argument(
            "recipe", nargs="?", metavar="RECIPE.yaml", help=f"{recipe}; none: the defaults"
        )
        p.add_argument("overrides", nargs="*", metavar="key=value", help=_OVERRIDES)
    elif command in ("eval", "taunorm"):
        example = (
            "longtail eval runs/demo-20260101-120000 probe.ood=fashion_mnist"
            if command == "eval"
            else "longtail taunorm runs/cifar10_lt-ce-r100-20260101-120000 train.device=cpu"
        )
        p = _parser(command, _examples(example))
        p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder `longtail train` printed")
        p.add_argument("overrides", nargs="*", metavar="key=value", help=_eval_overrides())
    elif command == "predict":
        p = _predict_parser()
    elif command == "export":
        p = _export_parser()
    elif command == "data":
        p = _parser(command, _examples("longtail data recipes/demo.yaml data.imbalance_ratio=10"))
        p.add_argument("recipe", nargs="?", metavar="RECIPE.yaml", help=recipe)
        p.add_argument("overrides", nargs="*", metavar="key=value", help=_OVERRIDES)
    elif command == "pack":
        p = _parser(command, _examples("longtail pack recipes/demo.yaml fmnist.npz --whole"))
        p.add_argument("recipe", metavar="RECIPE.yaml", help=recipe)
        p.add_argument("out", metavar="OUT.npz", help="the pack file to write")
        p.add_argument(
            "--whole",
            action="store_true",
            help="the whole training split, for runs that subset it themselves (data.dataset=pack)",
        )
        p.add_argument("overrides", nargs="*", metavar="key=value", help=_OVERRIDES)
    elif command == "report":
        p = _parser(command, _examples("longtail report reports/results/cifar10_lt.json runs/*"))
        p.add_argument(
            "results",
            metavar="RESULTS.json",
            help="the results file to merge into (its markdown table goes beside it)",
        )
        p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run folders")
    elif command == "study":
        p = _parser(command, _examples("longtail study recipes/studies/cpu_sweep.yaml"))
        p.add_argument(
            "spec",
            metavar="SPEC.yaml",
            help="a study spec (recipes/studies/, `longtail list recipes`)",
        )
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="study.<key>=value changes the spec; any other key=value every run's config",
        )
    elif command == "list":
        p = _parser(command, _examples("longtail list models", "longtail list keys | grep optim."))
        p.add_argument(
            "target",
            choices=LIST_TARGETS,
            help="models: model.name values and their model.kwargs; recipes: train recipes and"
            " study specs; methods: the results-table method names (and how many recipes run"
            " each), strategy.name and loss.name values; keys: every config key",
        )
    else:
        parser, actions = _queue_parser()
        return actions.get(args[0], parser) if args else parser
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("longtail")
    except PackageNotFoundError:
        import longtail

        return longtail.__version__


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--version"]:
        print(f"longtail {_version()}")
        return 0
    width = max(map(len, COMMANDS))
    commands = [
        textwrap.fill(SUMMARY[c], 100, initial_indent=f"  {c:<{width}}  ",
                      subsequent_indent=" " * (width + 4))
        for c in COMMANDS
    ]  # fmt: skip
    parser = argparse.ArgumentParser(
        prog="longtail",
        description="Long-tailed representation and classifier learning.\n\ncommands:\n"
        + "\n".join(commands),
        epilog="Overrides are dotted key=value pairs, e.g. optim.lr=0.05 train.epochs=10.\n"
        "'longtail COMMAND --help' describes one command: its arguments and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"longtail {_version()}")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="recipe or run folder, then key=value"
    )
    ns = parser.parse_args(args)
    if any(a in ("-h", "--help") for a in ns.args):
        print(_help_parser(ns.command, list(ns.args)).format_help(), end="")
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
    except BrokenPipeError:  # `longtail list recipes | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 1
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

"""The command line: train / eval / data / config / list, --help and --version, and one-line errors
with exit status 2."""

from __future__ import annotations

import json
import re
from dataclasses import fields, is_dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from data.fixtures import write_idx
from longtail.cli import COMMANDS, main
from longtail.config import Config, all_keys, choices, load_config, to_yaml
from longtail.models.registry import list_models

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmnist_cli")
    write_idx(root, n_train_per_class=30, n_test_per_class=4)
    return root


def _demo_overrides(root: Path, out: Path) -> list[str]:
    return [
        f"data.root={root}",
        "data.cache_dir=null",
        f"out_dir={out}",
        "train.epochs=1",
        "train.max_steps_per_epoch=2",
        "train.batch_size=16",
        "train.progress=false",
    ]


def test_data_prints_counts_json(idx_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = str(REPO / "recipes" / "demo.yaml")
    overrides = [f"data.root={idx_root}", "data.cache_dir=null", "data.imbalance_ratio=10"]
    assert main(["data", recipe, *overrides]) == 0
    line = capsys.readouterr().out.strip()
    record = json.loads(line)
    assert record["dataset"] == "fashion_mnist"
    expected = [int(30 * 10 ** (-c / 9)) for c in range(10)]
    assert record["counts"] == expected and record["total"] == sum(expected)


def test_train_then_eval(
    idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = str(REPO / "recipes" / "demo.yaml")
    assert (
        main(["train", recipe, *_demo_overrides(idx_root, tmp_path), "data.imbalance_ratio=10"])
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    run = Path(out[-1])  # the last line stays the run folder; the summary comes before it
    assert (run / "final.json").is_file()
    from longtail.summary import run_summary

    final = json.loads((run / "final.json").read_text())
    assert "\n".join(out[:-1]) == run_summary(final)
    assert ["top-1", f"{final['top1']:.2f}"] in [line.split()[:2] for line in out]
    assert main(["eval", str(run)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == json.loads((run / "final.json").read_text())["top1"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "missing.yaml"], "does not exist"),
        (["train", "recipes/demo.yaml", "optim.lrr=1"], "did you mean 'optim.lr'"),
        (["train", "recipes/demo.yaml", "data.imbalance_ratio=0.2"], "must be >= 1"),
        (["train", "recipes/demo.yaml", "data.root=/nonexistent"], "does not exist"),
        (["eval", "/nonexistent"], "not a run folder"),
        (["train"], "needs a recipe"),
        (["train", "recipes/demo.yaml", "out_dir=/dev/null/x"], "out_dir"),
        (["config", "recipes/demo.yaml", "optim.lrr=1"], "did you mean 'optim.lr'"),
        (["config", "missing.yaml"], "does not exist"),
    ],
)
def test_errors_are_one_line(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and fragment in err
    assert "\n" not in err and "Traceback" not in err


def test_help_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    assert "resume=RUN_DIR" in capsys.readouterr().out


def _leaf_keys(node: object, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config dataclass, nested sections included."""
    if not is_dataclass(node):
        return [prefix.rstrip(".")]
    return [
        k for f in fields(node) for k in _leaf_keys(getattr(node, f.name), f"{prefix}{f.name}.")
    ]


def _help(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*command, "--help"]) == 0
    return capsys.readouterr().out


# each command's help must name these, its own arguments
OWN_ARGUMENTS = {
    "train": ["RECIPE.yaml", "key=value", "resume=RUN_DIR"],
    "eval": ["RUN_DIR", "key=value", "probe.*"],
    "predict": ["RUN_DIR", "IMAGE|FOLDER", "--topk", "--json"],
    "export": ["RUN_DIR"],
    "taunorm": ["RUN_DIR", "key=value", "train.device"],
    "data": ["RECIPE.yaml", "key=value"],
    "pack": ["RECIPE.yaml", "OUT.npz", "--whole"],
    "report": ["RESULTS.json", "RUN_DIR"],
    "study": ["SPEC.yaml", "study.<key>=value"],
    "queue": ["{run,merge}"],
    "config": ["RECIPE.yaml", "key=value"],
    "list": ["{models,recipes,methods,keys}"],
}


def test_every_command_has_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(OWN_ARGUMENTS) == set(COMMANDS)
    texts = {}
    for command, arguments in OWN_ARGUMENTS.items():
        text = _help([command], capsys)
        assert text.startswith(f"usage: longtail {command} "), text[:200]
        assert "example" in text
        for argument in arguments:
            assert argument in text, (command, argument)
        texts[command] = text
    assert len(set(texts.values())) == len(texts)  # every pair differs
    run, merge = _help(["queue", "run"], capsys), _help(["queue", "merge"], capsys)
    assert run.startswith("usage: longtail queue run") and "--budget" in run
    assert merge.startswith("usage: longtail queue merge") and "--queue" in merge


@pytest.mark.parametrize("command", ["train", "config"])
def test_train_help_lists_every_key_default_and_choices(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help([command], capsys)
    defaults = Config()
    assert f"  optim.lr={defaults.optim.lr}\n" in text
    assert f"  loss.reweight_epoch={defaults.loss.reweight_epoch}\n" in text
    sampler = ", ".join(choices()["train.sampler"])
    assert f"  train.sampler={defaults.train.sampler}  {{{sampler}}}\n" in text
    for key in all_keys():  # every method's strategy.* keys too
        assert f"  {key}=" in text, key
    for key, names in choices().items():
        assert f"{{{', '.join(names)}}}" in text, key
    assert (
        "strategy.* of strategy.name=hybrid" in text and "  strategy.curriculum=parabolic" in text
    )
    # the comment written beside a field in its section's module comes along (read from source)
    source = (REPO / "src" / "longtail" / "losses" / "config.py").read_text()
    comment = re.search(r"^\s+reweight_epoch: .*?# (.*)$", source, re.MULTILINE)
    assert comment is not None
    assert " ".join(comment.group(1).split()[:4]) in " ".join(text.split())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"longtail {version('longtail')}\n"


def test_config_prints_only_the_resolved_yaml(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["config", "recipes/demo.yaml", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    tree = yaml.safe_load(out)
    assert isinstance(tree, dict) and tree["train"]["epochs"] == 3
    assert tree["name"] == "demo" and set(tree) == {f.name for f in fields(Config)}
    assert out == to_yaml(load_config("recipes/demo.yaml", ["train.epochs=3"]))


def _listed(target: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["list", target]) == 0
    return capsys.readouterr().out.splitlines()


def test_list_models_recipes_methods_keys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    models = [line.split()[0] for line in _listed("models", capsys)]
    assert "resnet32" in models and "resnet50" in models and models == list_models()

    recipes = _listed("recipes", capsys)
    assert "recipes/demo.yaml" in recipes
    studies = recipes.index(next(line for line in recipes if line.startswith("# study specs")))
    assert "recipes/studies/sweep.yaml" in recipes[studies:]
    assert not any(line.startswith("recipes/studies/") for line in recipes[:studies])

    methods = _listed("methods", capsys)
    counts = {line.split()[0]: line.split()[1] for line in methods if len(line.split()) == 2}
    assert int(counts["LDAM-DRW"]) >= 3  # one a ratio on CIFAR-10-LT and CIFAR-100-LT
    listed_names = {line.split()[0] for line in methods if line.strip()}
    for name in (*choices()["strategy.name"], *choices()["loss.name"]):
        assert name in listed_names

    keys = _listed("keys", capsys)
    listed = {line.split("=")[0].strip() for line in keys if line.startswith("  ") and "=" in line}
    assert set(all_keys()) <= listed


@pytest.mark.parametrize("argv", [["list", "bogus"], ["list"]])
def test_list_unknown_target_is_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert all(target in err for target in ("models", "recipes", "methods", "keys"))


def test_report_lists_what_it_skipped_and_fails_when_nothing_is_left(
    idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = str(REPO / "recipes" / "demo.yaml")  # a shortened demo, without a method name
    overrides = [*_demo_overrides(idx_root, tmp_path), "data.imbalance_ratio=10"]
    assert main(["train", recipe, *overrides]) == 0
    run = capsys.readouterr().out.strip().splitlines()[-1]
    results = tmp_path / "results.json"
    assert main(["report", str(results), run]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"skipped {run}: shortened: train.max_steps_per_epoch=2; train.epochs=1 < the recipe's 11"
    )
    assert err[-1].startswith("error: none of the 1 runs enters a results table")
    assert not results.exists()

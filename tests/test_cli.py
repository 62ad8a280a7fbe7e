"""The command line: train / eval / data, and one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.fixtures import write_idx
from longtail.cli import main

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
    run = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert (run / "final.json").is_file()
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

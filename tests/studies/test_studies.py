"""The study runner: which runs it trains, reuse of complete runs, records, merge, outputs, errors.

Most tests swap ``longtail.studies.runner.train`` for a fake (conftest.py); the last trains four
real tiny runs end to end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data.fixtures import write_idx
from longtail.cli import main
from longtail.config import Config
from longtail.errors import LongtailError
from longtail.studies import run_study, runner
from shared_data import REPO
from tiny_runs import tiny_run

SWEEP_KEYS = [
    "method", "ratio", "total", "epochs", "probe_top1", "probe_knn_top1", "few_many_ratio", "slope",
    "cv", "device", "commit", "recipe", "run", "num_classes", "shortened", "seed",
]  # fmt: skip
EQUAL_KEYS = [
    "method", "pretrain", "total", "epochs", "probe_top1", "ood_probe_top1", "probe_knn_top1",
    "few_many_ratio", "device", "commit", "recipe", "run", "num_classes", "shortened", "seed",
]  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sweep_spec(tmp_path: Path, recipes: dict[str, Path], write_spec: Callable[..., Path]) -> Path:
    return write_spec(
        study="sweep",
        results=str(tmp_path / "results" / "sweep.json"),
        ratios=[1, 10],
        total=200,
        methods={"CE": str(recipes["ce"]), "SimSiam v2/x": str(recipes["simsiam"])},
        overrides=["optim.lr=0.2", "probe.ood=fashion_mnist"],
    )


def _results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())


def test_sweep_trains_each_method_and_ratio_with_its_overrides(
    sweep_spec: Path, fake_train: list[Config], recipes: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    results = run_study(sweep_spec, [f"out_dir={out}", "optim.lr=0.01", "train.epochs=3"])
    assert results == tmp_path / "results" / "sweep.json"
    seen = [(c.method, c.data.imbalance_ratio, c.data.total, c.name) for c in fake_train]
    assert seen == [
        ("CE", 1.0, 200, "sweep-CE-r1"),
        ("CE", 10.0, 200, "sweep-CE-r10"),
        ("SimSiam v2/x", 1.0, 200, "sweep-SimSiam_v2_x-r1"),
        ("SimSiam v2/x", 10.0, 200, "sweep-SimSiam_v2_x-r10"),
    ]
    for cfg in fake_train:
        assert cfg.probe.ood == "fashion_mnist"  # the spec's overrides reach every run
        assert cfg.optim.lr == 0.01  # the command line's come after the spec's (0.2)
        assert cfg.train.epochs == 3 and cfg.out_dir == str(out)
    assert [c.recipe for c in fake_train] == [str(recipes["ce"])] * 2 + [
        str(recipes["simsiam"])
    ] * 2


def test_sweep_records_hold_exactly_the_schema(
    sweep_spec: Path, fake_train: list[Config], tmp_path: Path
) -> None:
    results = run_study(sweep_spec, [f"out_dir={tmp_path / 'runs'}"])
    records = _results(results)
    assert [(r["method"], r["ratio"]) for r in records] == [
        ("CE", 1), ("CE", 10), ("SimSiam v2/x", 1), ("SimSiam v2/x", 10)
    ]  # fmt: skip
    for record in records:
        assert list(record) == SWEEP_KEYS
        final = json.loads((Path(record["run"]) / "final.json").read_text())
        config = (Path(record["run"]) / "config.yaml").read_text()
        assert f"imbalance_ratio: {float(record['ratio'])}" in config
        assert record["total"] == sum(final["train_counts"]) == 200
        assert record["epochs"] == 7  # the recipes' train.epochs
        for key in (
            "probe_top1",
            "probe_knn_top1",
            "few_many_ratio",
            "slope",
            "cv",
            "device",
            "commit",
        ):
            assert record[key] == final[key]
        # the fake's numbers fall with log r: the record is the run of its own ratio
        assert record["slope"] == pytest.approx(2.0 * math.log10(record["ratio"]))


def test_complete_runs_are_reused_and_changed_or_unfinished_ones_retrained(
    sweep_spec: Path, fake_train: list[Config], tmp_path: Path
) -> None:
    out = [f"out_dir={tmp_path / 'runs'}"]
    first = _results(run_study(sweep_spec, out))
    assert len(fake_train) == 4
    assert _results(run_study(sweep_spec, out)) == first
    assert len(fake_train) == 4  # nothing trained again

    # an added ratio trains only its own runs; the rest are reused
    run_study(sweep_spec, [*out, "study.ratios=[1,10,100]"])
    assert [c.name for c in fake_train[4:]] == ["sweep-CE-r100", "sweep-SimSiam_v2_x-r100"]

    # a run that stopped before final.json is not reused
    ce_r1 = next(r for r in first if (r["method"], r["ratio"]) == ("CE", 1))
    (Path(ce_r1["run"]) / "final.json").unlink()
    run_study(sweep_spec, out)
    assert [c.name for c in fake_train[6:]] == ["sweep-CE-r1"]

    # a different resolved config (here train.epochs) is a different run
    run_study(sweep_spec, [*out, "train.epochs=2", "study.only=[CE]"])
    assert [(c.name, c.train.epochs) for c in fake_train[7:]] == [
        ("sweep-CE-r1", 2), ("sweep-CE-r10", 2)
    ]  # fmt: skip


def test_merge_keeps_other_records_and_replaces_same_key(
    sweep_spec: Path, fake_train: list[Config], tmp_path: Path
) -> None:
    results = tmp_path / "results" / "sweep.json"
    results.parent.mkdir()
    other = {"method": "AAA", "ratio": 50.0, "probe_top1": 12.0}
    stale = {"method": "CE", "ratio": 10.0, "probe_top1": -1.0}
    results.write_text(json.dumps([stale, other]))
    run_study(sweep_spec, [f"out_dir={tmp_path / 'runs'}", "study.only=CE"])
    records = _results(results)
    assert [(r["method"], r["ratio"]) for r in records] == [("AAA", 50), ("CE", 1), ("CE", 10)]
    assert records[0] == {**other, "seed": 0}  # a record from before seeds: seed 0
    assert records[2]["probe_top1"] == pytest.approx(75.0)  # the fake's CE at r=10: 80 - 5
    assert [c.method for c in fake_train] == ["CE", "CE"]  # study.only runs a subset


def test_sweep_table_and_plot(sweep_spec: Path, fake_train: list[Config], tmp_path: Path) -> None:
    results = run_study(sweep_spec, [f"out_dir={tmp_path / 'runs'}"])
    assert results.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|\n").split("|")[1:]]
        for line in results.with_suffix(".md").read_text().splitlines()
        if line.startswith("| ") and not line.startswith("| method")
    }
    assert "| method | r=1 | r=10 |" in results.with_suffix(".md").read_text()
    # fake CE: probe 80 - 5 log r, few/many 1 / (1 + log r / 4); another method 1 point higher
    assert rows["CE"] == ["80.00 / 1.00", "75.00 / 0.80"]
    assert rows["SimSiam v2/x"] == ["81.00 / 1.00", "76.00 / 0.80"]


@pytest.fixture
def equal_spec(tmp_path: Path, recipes: dict[str, Path], write_spec: Callable[..., Path]) -> Path:
    """Balanced (120 images) vs r = 100, CE and SimSiam, the OOD probe on."""
    return write_spec(
        study="equal_size",
        results=str(tmp_path / "equal_size.json"),
        pretrain={
            "balanced": ["data.imbalance_ratio=1", "data.total=120"],
            "imbalanced": ["data.imbalance_ratio=100"],
        },
        methods={"CE": str(recipes["ce"]), "SimSiam": str(recipes["simsiam"])},
        overrides=["probe.ood=fashion_mnist"],
    )


def test_equal_size_runs_records_gap_table(
    tmp_path: Path, equal_spec: Path, fake_train: list[Config]
) -> None:
    spec = equal_spec
    results = run_study(spec, [f"out_dir={tmp_path / 'runs'}"])
    seen = [(c.name, c.data.imbalance_ratio, c.data.total, c.probe.ood) for c in fake_train]
    assert seen == [
        ("equal-CE-balanced", 1.0, 120, "fashion_mnist"),
        ("equal-CE-imbalanced", 100.0, None, "fashion_mnist"),
        ("equal-SimSiam-balanced", 1.0, 120, "fashion_mnist"),
        ("equal-SimSiam-imbalanced", 100.0, None, "fashion_mnist"),
    ]
    records = _results(results)
    assert [(r["method"], r["pretrain"]) for r in records] == [
        ("CE", "balanced"), ("CE", "imbalanced"), ("SimSiam", "balanced"), ("SimSiam", "imbalanced")
    ]  # fmt: skip
    for record in records:
        assert list(record) == EQUAL_KEYS
    # the fake's imbalanced set: floor(50 * 100^(-c/9)), 10 classes
    assert records[1]["total"] == sum(math.floor(50 * 100 ** (-c / 9)) for c in range(10))
    assert records[0]["total"] == 120
    # gap = balanced - imbalanced = 5 log10(100) = 10 points, in domain and OOD alike
    table = results.with_suffix(".md").read_text()
    assert "| CE | 80.00 | 70.00 | +10.00 | 50.00 | 40.00 | +10.00 |" in table
    assert "| SimSiam | 84.00 | 74.00 | +10.00 | 54.00 | 44.00 | +10.00 |" in table
    assert results.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_equal_size_slices_merge_into_the_whole_study(
    tmp_path: Path,
    equal_spec: Path,
    recipes: dict[str, Path],
    write_spec: Callable[..., Path],
    fake_train: list[Config],
) -> None:
    """One (method, set) per call, as the owed queue runs them: the same records as one call."""
    spec = equal_spec
    out = f"out_dir={tmp_path / 'runs'}"
    for method, pretrain in (("SimSiam", "imbalanced"), ("CE", "balanced"),
                             ("SimSiam", "balanced"), ("CE", "imbalanced")):  # fmt: skip
        run_study(spec, [out, f"study.only=[{method}]", f"study.pretrain_only=[{pretrain}]"])
    assert [c.name for c in fake_train] == [
        "equal-SimSiam-imbalanced", "equal-CE-balanced", "equal-SimSiam-balanced",
        "equal-CE-imbalanced",
    ]  # fmt: skip
    records = _results(tmp_path / "equal_size.json")
    assert sorted((r["method"], r["pretrain"]) for r in records) == [
        ("CE", "balanced"), ("CE", "imbalanced"), ("SimSiam", "balanced"), ("SimSiam", "imbalanced")
    ]  # fmt: skip
    table = (tmp_path / "equal_size.md").read_text()
    assert "| CE | 80.00 | 70.00 | +10.00 |" in table
    with pytest.raises(LongtailError, match="study.pretrain_only names 'tiny', not a set of this"):
        run_study(spec, [out, "study.pretrain_only=[tiny]"])
    with pytest.raises(LongtailError, match="unknown sweep spec key 'pretrain_only'"):
        run_study(write_spec(study="sweep", results=str(tmp_path / "s.json"), ratios=[1],
                             total=100, methods={"CE": str(recipes["ce"])}),
                  [out, "study.pretrain_only=[balanced]"])  # fmt: skip


@pytest.mark.parametrize(
    ("change", "overrides", "match"),
    [
        ({"ratioz": [1]}, [], "unknown sweep spec key 'ratioz'.*did you mean 'ratios'"),
        ({"methods": {"CE": "nowhere/ce.yaml"}}, [], "recipe nowhere/ce.yaml of method CE"),
        ({"ratios": [1, 0.5]}, [], "ratio 0.5 must be a number >= 1"),
        ({}, ["study.ratios=[0,10]"], "ratio 0 must be a number >= 1"),
        ({}, ["study.only=[CE,SupCon]"], "study.only names 'SupCon'"),
        ({}, ["data.total=50"], "the command line sets data.total"),
        ({"overrides": ["name=x"]}, [], "the spec's overrides sets name"),
        ({}, ["optim.lrr=0.1"], "CE r=1: unknown config key 'optim.lrr'"),
        ({}, ["study=sweep"], "write study.<key>=value"),
    ],
)
def test_bad_specs_fail_before_anything_trains(
    change: dict[str, Any],
    overrides: list[str],
    match: str,
    tmp_path: Path,
    recipes: dict[str, Path],
    write_spec: Callable[..., Path],
    fake_train: list[Config],
) -> None:
    keys: dict[str, Any] = {
        "study": "sweep",
        "results": str(tmp_path / "sweep.json"),
        "ratios": [1, 10],
        "total": 100,
        "methods": {"CE": str(recipes["ce"]), "SimSiam": str(recipes["simsiam"])},
    }
    spec = write_spec(**(keys | change))
    with pytest.raises(LongtailError, match=match) as info:
        run_study(spec, [f"out_dir={tmp_path / 'runs'}", *overrides])
    assert "\n" not in str(info.value)
    assert fake_train == [] and not (tmp_path / "runs").exists()
    assert not (tmp_path / "sweep.json").exists()


def test_mixed_epochs_are_refused(
    tmp_path: Path,
    recipes: dict[str, Path],
    write_spec: Callable[..., Path],
    fake_train: list[Config],
) -> None:
    longer = recipes["ce"].with_name("long.yaml")
    longer.write_text("name: long\ntrain: {epochs: 9}\n")
    spec = write_spec(study="sweep", results=str(tmp_path / "s.json"), ratios=[1], total=100,
                      methods={"CE": str(recipes["ce"]), "Long": str(longer)})  # fmt: skip
    with pytest.raises(LongtailError, match="CE trains 7 epochs but Long 9: pass train.epochs"):
        run_study(spec, [f"out_dir={tmp_path}"])
    run_study(spec, [f"out_dir={tmp_path}", "train.epochs=2"])  # one length for all: fine
    assert [c.train.epochs for c in fake_train] == [2, 2]


def test_cli_prints_results_path_and_one_line_errors(
    sweep_spec: Path,
    fake_train: list[Config],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["study", str(sweep_spec), f"out_dir={tmp_path / 'runs'}", "study.only=CE"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "results" / "sweep.json")
    progress = captured.err.strip().splitlines()
    assert len(progress) == 4  # a line before and after each of the 2 runs
    assert progress[0].startswith("study sweep [1/2] CE r=1: training sweep-CE-r1")
    assert main(["study", str(sweep_spec), "study.ratios=[0.5]"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["study", "optim.lr=0.1"]) == 2


def test_real_sweep_end_to_end(
    tmp_path: Path, write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four real tiny runs (2 methods x r in {1, 10}) on Fashion-MNIST-format fixture data."""
    idx_root = tmp_path / "idx"
    write_idx(idx_root, n_train_per_class=40, n_test_per_class=5, size=16)
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "name: tiny\nstrategy: {name: supervised}\nmodel: {name: resnet20, kwargs: {width: 0.25}}\n"
    )
    lower = tmp_path / "tiny_low_lr.yaml"
    lower.write_text(recipe.read_text() + "optim: {lr: 0.02}\n")
    spec = write_spec(study="sweep", results=str(tmp_path / "sweep.json"), ratios=[1, 10],
                      total=100, methods={"CE": str(recipe), "CE2": str(lower)})  # fmt: skip
    overrides = [o for o in tiny_run(idx_root) if not o.startswith("data.imbalance_ratio=")] + [
        "train.epochs=1",
        "train.max_steps_per_epoch=2",
        "probe.balanced_per_class=20",
        "probe.iterations=5",
        f"out_dir={tmp_path / 'runs'}",
    ]
    results = run_study(spec, overrides)
    records = _results(results)
    assert [(r["method"], r["ratio"], r["total"]) for r in records] == [
        ("CE", 1, 100), ("CE", 10, 100), ("CE2", 1, 100), ("CE2", 10, 100)
    ]  # fmt: skip
    for record in records:
        assert math.isfinite(record["probe_top1"]) and 0 <= record["probe_top1"] <= 100
        assert record["epochs"] == 1

    def no_training(cfg: Config) -> Path:
        raise AssertionError(f"{cfg.name} trained again")

    monkeypatch.setattr(runner, "train", no_training)
    assert _results(run_study(spec, overrides)) == records  # real run folders are reused


@pytest.mark.parametrize("spec", ["sweep.yaml", "equal_size.yaml"])
def test_shipped_specs_load_every_run_config(
    spec: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The committed specs name existing recipes and give valid configs (nothing trains)."""
    monkeypatch.chdir(REPO)  # spec paths are relative to the repository root

    class Planned(Exception):
        pass

    def stop(cfg: Config) -> Path:
        raise Planned(cfg.name)  # reached only once every run's config has loaded

    monkeypatch.setattr(runner, "train", stop)
    with pytest.raises(Planned):
        run_study(REPO / "recipes" / "studies" / spec, [f"out_dir={tmp_path}"])


def test_study_plots_carry_their_own_title_epochs_and_a_chance_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from longtail.studies import equal_size, records, sweep

    rows = [{"method": "CE", "ratio": 1.0, "pretrain": "balanced", "epochs": 3, "total": 1000,
             "num_classes": 10, "shortened": True, "probe_top1": 40.0, "ood_probe_top1": 30.0,
             "few_many_ratio": 0.9}]  # fmt: skip
    assert records.plot_title("S", rows) == "S (3 epochs; 1,000 training images; shortened runs)"
    assert records.chance(rows) == 10.0
    assert records.chance([*rows, {**rows[0], "num_classes": 100}]) is None
    titles: list[str] = []
    monkeypatch.setattr(sweep, "plot_title", lambda study, rs: titles.append(study) or study)
    monkeypatch.setattr(equal_size, "plot_title", lambda study, rs: titles.append(study) or study)
    sweep.plot(rows, tmp_path / "s.png")
    equal_size.plot(rows, tmp_path / "e.png")
    assert titles == ["Accuracy and balancedness from balanced to long-tailed training sets",
                      "Balanced vs long-tailed pre-training of equal size"]  # fmt: skip


def test_seeds_repeat_every_run_and_the_table_shows_mean_and_std(
    tmp_path: Path, recipes: dict[str, Path], write_spec: Callable[..., Path],
    fake_train: list[Config],
) -> None:  # fmt: skip
    spec = write_spec(study="sweep", results=str(tmp_path / "s.json"), ratios=[1], total=200,
                      methods={"CE": str(recipes["ce"])}, seeds=[0, 2])  # fmt: skip
    results = run_study(spec, [f"out_dir={tmp_path / 'runs'}"])
    assert [(c.name, c.train.seed) for c in fake_train] == [("sweep-CE-r1", 0),
                                                            ("sweep-CE-r1-s2", 2)]  # fmt: skip
    assert [(r["method"], r["ratio"], r["seed"]) for r in _results(results)] == [
        ("CE", 1.0, 0), ("CE", 1.0, 2)
    ]  # fmt: skip
    # fake CE at r=1: probe 80 + seed -> 80 and 82: mean 81, population std 1
    assert "| CE | 81.00 ± 1.00 / 1.00 ± 0.00 |" in results.with_suffix(".md").read_text()
    with pytest.raises(LongtailError, match="seeds=.* must list distinct"):
        run_study(spec, ["study.seeds=[1, 1]"])


def test_records_from_before_seeds_merge_as_seed_0(tmp_path: Path) -> None:
    from longtail.studies.records import merge_records

    path = tmp_path / "old.json"
    path.write_text(json.dumps([{"method": "CE", "ratio": 1.0, "probe_top1": 70.0}]))
    merged = merge_records(path, [{"method": "CE", "ratio": 1.0, "seed": 0, "probe_top1": 71.0}],
                           ("method", "ratio", "seed"))  # fmt: skip
    assert merged == [{"method": "CE", "ratio": 1.0, "seed": 0, "probe_top1": 71.0}]

"""Results tables: grouping over seeds, the schema, merging, and the markdown gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.report import collect, markdown_table, report
from longtail.train.trainer import train

# one xdist worker runs this module (its fixtures train once): see tests/test_dist.py
pytestmark = pytest.mark.xdist_group("report")


def _base(root: Path) -> list[str]:
    return [
        "data.dataset=fashion_mnist",
        f"data.root={root / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=5",
        "model.name=resnet20",
        "model.kwargs.width=0.25",
        "train.batch_size=32",
        "train.epochs=1",
        "train.progress=false",
        f"out_dir={root / 'runs'}",
        "paper.top1=70.0",
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("report")
    write_idx(root / "idx", n_train_per_class=20, n_test_per_class=3)
    base = _base(root)
    made = [train(load_config(None, [*base, "method=CE", f"train.seed={s}"])) for s in (0, 1)]
    made.append(train(load_config(None, [*base, "method=CE-DRW", "paper.top1=76.0"])))
    short = load_config(None, [*base, "method=CE", "train.max_steps_per_epoch=1"])
    made.append(train(short))  # shortened: must be left out
    return made


def test_collect_groups_seeds_and_skips_short_runs(runs: list[Path]) -> None:
    records = {r["method"]: r for r in collect(runs)}
    ce = records["CE"]
    finals = [json.loads((r / "final.json").read_text())["top1"] for r in runs[:2]]
    assert ce["seeds"] == [0, 1] and ce["top1_per_seed"] == [round(t, 2) for t in finals]
    assert ce["top1_mean"] == pytest.approx(sum(finals) / 2, abs=0.01)
    assert ce["top1_std"] == pytest.approx(abs(finals[0] - finals[1]) / 2, abs=0.01)
    keys = {"method", "ratio", "top1_mean", "top1_std", "seeds", "top1_per_seed", "paper_top1"}
    assert keys | {"many", "medium", "few", "head", "middle", "tail", "epochs", "device"} <= set(ce)
    assert ce["ratio"] == 5.0 and ce["paper_top1"] == 70.0 and ce["many"] is None


def test_report_merges_and_writes_markdown(runs: list[Path], tmp_path: Path) -> None:
    results = tmp_path / "cifar10_lt.json"
    old = {"method": "Old", "ratio": 5.0, "recipe": "", "top1_mean": 1.0, "top1_std": 0.0}
    results.write_text(json.dumps([{**old, "seeds": [0], "paper_top1": None}]))
    table = report(runs, results)
    merged = json.loads(results.read_text())
    assert {r["method"] for r in merged} == {"Old", "CE", "CE-DRW"}
    assert results.with_suffix(".md").read_text() == table
    report(runs, results)  # a re-run replaces, never duplicates
    assert len(json.loads(results.read_text())) == 3


def test_markdown_gaps() -> None:
    records = [
        {
            "method": "CE",
            "ratio": 100.0,
            "top1_mean": 66.0,
            "top1_std": 0.5,
            "seeds": [0, 1],
            "paper_top1": 70.36,
        },
        {
            "method": "CE-DRW",
            "ratio": 100.0,
            "top1_mean": 71.0,
            "top1_std": 0.0,
            "seeds": [0],
            "paper_top1": 76.34,
        },
    ]
    table = markdown_table(records)
    assert "| CE-DRW | 71.00 ± 0.00 (1) | 76.34 | +5.00 | +5.98 |" in table


def test_mixed_settings_and_duplicate_seeds_are_refused(runs: list[Path], tmp_path: Path) -> None:
    from longtail.errors import LongtailError

    with pytest.raises(LongtailError, match="same seed"):
        collect([runs[0], runs[0]])
    root = runs[0].parent.parent
    other = train(load_config(None, [*_base(root), "method=CE", "optim.lr=0.05", "train.seed=7"]))
    with pytest.raises(LongtailError, match="different settings"):
        collect([runs[0], other])


def test_records_carry_their_dataset_and_shortened_runs_say_so(runs: list[Path]) -> None:
    assert {r["dataset"] for r in collect(runs)} == {"fashion_mnist"}
    skipped: list[str] = []
    collect(runs, skipped)
    assert skipped == [f"{runs[3]}: shortened: train.max_steps_per_epoch=1"]
    assert json.loads((runs[3] / "final.json").read_text())["shortened"] == [
        "train.max_steps_per_epoch=1"
    ]
    assert json.loads((runs[0] / "final.json").read_text())["shortened"] == []


def test_a_report_with_nothing_to_tabulate_fails_and_writes_nothing(
    runs: list[Path], tmp_path: Path
) -> None:
    from longtail.errors import LongtailError

    results = tmp_path / "out.json"
    with pytest.raises(LongtailError, match="none of the 1 runs .*shortened: train.max_steps"):
        report([runs[3]], results)
    assert not results.exists() and not results.with_suffix(".md").exists()
    unfinished = runs[3].parent / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((runs[3] / "config.yaml").read_text())
    (unfinished / "status.json").write_text('{"state": "running"}')
    skipped: list[str] = []
    report([runs[0], unfinished], results, skipped)
    assert skipped == [f"{unfinished}: not finished (status running, no final.json)"]


def test_the_same_method_and_ratio_on_two_datasets_are_two_tables() -> None:
    row = {"method": "CE", "ratio": 100.0, "top1_std": 0.0, "seeds": [0], "paper_top1": None}
    table = markdown_table(
        [{**row, "dataset": "cifar10", "top1_mean": 70.0},
         {**row, "dataset": "cifar100", "top1_mean": 38.0}]
    )  # fmt: skip
    assert "### cifar10\n" in table and "### cifar100\n" in table
    assert "| CE | 70.00 ± 0.00 (1)" in table and "| CE | 38.00 ± 0.00 (1)" in table


def test_a_record_written_before_records_had_a_dataset_is_replaced(
    runs: list[Path], tmp_path: Path
) -> None:
    """Legacy records (no "dataset") take their recipe's dataset, so a re-run replaces them."""
    results = tmp_path / "legacy.json"
    fresh = collect(runs[:2])
    legacy = [{k: v for k, v in r.items() if k != "dataset"} for r in fresh]
    results.write_text(json.dumps(legacy))
    report(runs[:2], results)
    assert len(json.loads(results.read_text())) == len(fresh)


def test_a_queue_rebuild_of_runs_that_are_no_table_row_writes_nothing(
    runs: list[Path], tmp_path: Path
) -> None:
    """A first stage without a method name feeds its results file nothing, and never fails."""
    from types import SimpleNamespace

    from longtail.queue.merge import _rebuild

    kept = tmp_path / "kept"
    (kept / "stage1").mkdir(parents=True)
    for name in ("config.yaml", "final.json", "status.json"):
        text = (runs[3] / name).read_text()  # a shortened run: no row either
        (kept / "stage1" / name).write_text(text)
    entry = SimpleNamespace(id="stage1", kind="train", results=str(tmp_path / "r.json"))
    assert _rebuild(SimpleNamespace(entries=[entry]), entry.results, kept) == ""  # type: ignore[arg-type]
    assert not (tmp_path / "r.json").exists()


def test_a_representation_run_enters_no_table_and_says_why(
    runs: list[Path], tmp_path: Path
) -> None:
    """Its top-1 would be a kNN monitor, not a trained classifier's (eval/monitor.py)."""
    from longtail.config import to_yaml

    folder = runs[0].parent / "representation"
    folder.mkdir()
    cfg = load_config(runs[0] / "config.yaml", ["strategy.name=simsiam", "method=SimSiam"])
    (folder / "config.yaml").write_text(to_yaml(cfg))
    (folder / "status.json").write_text('{"state": "complete"}')
    (folder / "final.json").write_text('{"knn_top1": 30.0, "probe_top1": 40.0}')
    skipped: list[str] = []
    report([runs[0], folder], tmp_path / "out.json", skipped)
    assert len(skipped) == 1 and skipped[0].startswith(f"{folder}: a representation-learning run")

"""commands.py: the argv of each kind of entry, and the pack a recipe's subset is read from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from longtail.config import load_config
from longtail.queue.commands import (
    CPU_EVAL_EVERY,
    Device,
    build_command,
    entry_config,
    pack_for,
    pack_name,
)
from longtail.queue.spec import Entry

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "longtail.cli"]
CPU = Device("cpu", "cpu", threads=1)
GPU = Device("cuda", "h200")


def _entry(**fields: object) -> Entry:
    base: dict[str, object] = {
        "id": "c10-ce", "kind": "train", "recipe": "recipes/cifar10_lt/ce_r100.yaml", "issue": 5,
        "results": "reports/results/cifar10_lt.json", "priority": 1, "minutes": {"cpu": 1},
        "overrides": ["optim.lr=0.05"], "seed": 3,
    }  # fmt: skip
    return Entry(**{**base, **fields})  # type: ignore[arg-type]


def test_cpu_train_command(tmp_path: Path) -> None:
    """On a CPU: the recipe, its overrides, the device keys with threads, eval every 10, seed, folder."""
    argv = build_command(_entry(), CPU, tmp_path)
    assert argv == [
        *CLI, "train", "recipes/cifar10_lt/ce_r100.yaml", "optim.lr=0.05",
        "train.device=cpu", "train.progress=false", "train.threads=1",
        f"eval.every={CPU_EVAL_EVERY}", "train.seed=3", f"out_dir={tmp_path}", "name=c10-ce",
    ]  # fmt: skip
    assert CPU_EVAL_EVERY == 10


def test_gpu_train_command_evaluates_every_epoch(tmp_path: Path) -> None:
    """On a GPU: no eval.every (every epoch is cheap there), and no threads when none are set."""
    argv = build_command(_entry(), GPU, tmp_path)
    assert not any(a.startswith(("eval.every=", "train.threads=")) for a in argv)
    assert "train.device=cuda" in argv
    assert "train.threads=4" in build_command(_entry(), Device("cuda", "h200", 4), tmp_path)


def test_resume_command_continues_the_folder(tmp_path: Path) -> None:
    """A resume names only the run folder and the device keys (the saved config defines the run)."""
    run = tmp_path / "20260101-000000-c10-ce"
    argv = build_command(_entry(), CPU, tmp_path, resume=run)
    assert argv == [*CLI, "train", f"resume={run}", "train.device=cpu", "train.progress=false",
                    "train.threads=1"]  # fmt: skip


def test_pack_and_first_stage(tmp_path: Path) -> None:
    """A pack replaces the data source after the entry's overrides; a stage-2 entry gets init.run."""
    pack, first = tmp_path / "cifar10_r100_x.npz", tmp_path / "20260101-000000-stage1"
    argv = build_command(_entry(after="stage1"), GPU, tmp_path, pack=pack, init_run=first)
    assert argv.index("data.dataset=pack") > argv.index("optim.lr=0.05")
    assert argv[argv.index("data.dataset=pack") + 1] == f"data.root={pack}"
    assert f"init.run={first}" in argv
    assert not any(a.startswith(("data.", "init.")) for a in build_command(_entry(), GPU, tmp_path))


def test_study_and_benchmark_commands(tmp_path: Path) -> None:
    """A study writes its results into the entry's outputs folder; a benchmark gets --out and its pack."""
    study = _entry(id="sweep", kind="study", recipe="recipes/studies/x.yaml",
                   results="reports/results/sweep.json")  # fmt: skip
    argv = build_command(study, CPU, tmp_path)
    assert argv[3:5] == ["study", "recipes/studies/x.yaml"]
    assert f"study.results={tmp_path / 'sweep' / 'sweep.json'}" in argv
    assert f"out_dir={tmp_path / 'sweep' / 'runs'}" in argv and "eval.every=10" in argv
    bench = _entry(id="speed", kind="benchmark", command="benchmarks/speed.py --data {pack} --n 3")
    pack = tmp_path / "p.npz"
    assert build_command(bench, GPU, tmp_path, pack=pack) == [
        sys.executable, "benchmarks/speed.py", "--data", str(pack), "--n", "3",
        "--out", str(tmp_path / "speed" / "speed.json"),
    ]  # fmt: skip


def test_entry_config_applies_overrides_and_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config an entry trains: recipe <- overrides <- seed."""
    monkeypatch.chdir(REPO)
    cfg = entry_config(_entry())
    assert (cfg.optim.lr, cfg.train.seed, cfg.method) == (0.05, 3, "CE")


def test_pack_name_follows_the_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes of one subset share a pack; another ratio or subset seed is another pack."""
    monkeypatch.chdir(REPO)
    ce = load_config("recipes/cifar10_lt/ce_r100.yaml").data
    focal = load_config("recipes/cifar10_lt/focal_r100.yaml").data
    r50 = load_config("recipes/cifar10_lt/ce_r50.yaml").data
    assert pack_name(ce) == pack_name(focal)
    assert pack_name(ce).startswith("cifar10_r100_") and pack_name(ce).endswith(".npz")
    assert pack_name(r50) != pack_name(ce) and pack_name(r50).startswith("cifar10_r50_")
    other_seed = load_config("recipes/cifar10_lt/ce_r100.yaml", ["data.subset_seed=1"]).data
    assert pack_name(other_seed) != pack_name(ce)
    assert pack_name(ce, whole=True) == pack_name(r50, whole=True) == "cifar10_whole.npz"


def test_pack_for_finds_only_an_existing_pack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pack is used only when the packs folder holds it."""
    monkeypatch.chdir(REPO)
    entry = _entry()
    assert pack_for(entry, None) is None and pack_for(entry, tmp_path) is None
    pack = tmp_path / pack_name(entry_config(entry).data)
    pack.write_bytes(b"")
    assert pack_for(entry, tmp_path) == pack

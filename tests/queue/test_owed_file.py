"""The committed queue (reports/results/owed.yaml) loads, and every entry can be run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.queue.commands import entry_config, pack_name
from longtail.queue.spec import load_queue
from longtail.studies.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def owed():
    return load_queue(ROOT / "reports/results/owed.yaml", root=ROOT)


def test_every_train_entry_resolves_to_a_valid_config(owed, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    for entry in owed.entries:
        if entry.kind == "train":
            cfg = entry_config(entry)
            assert cfg.train.seed == entry.seed
        elif entry.kind == "study":
            assert load_spec(entry.recipe).results == Path(entry.results)


def test_stage_two_entries_start_from_a_stage_one_of_the_same_subset(owed, monkeypatch) -> None:
    """cRT / LWS / stage 2 read init.run's subset: their first stage must train the same images."""
    monkeypatch.chdir(ROOT)
    staged = [e for e in owed.entries if e.after is not None]
    assert staged, "the queue has stage-2 entries (cRT, LWS, KCL's classifier, two-stage SC)"
    for entry in staged:
        first = owed.by_id(entry.after)
        assert pack_name(entry_config(entry).data) == pack_name(entry_config(first).data), entry.id


def test_leases_one_and_two_are_the_r100_columns(owed) -> None:
    lease1 = [e for e in owed.entries if e.priority == 1]
    lease2 = [e for e in owed.entries if e.priority == 2]
    assert all("cifar10_lt/" in e.recipe and "_r100" in e.recipe for e in lease1)
    assert all("cifar100_lt/" in e.recipe and "_r100" in e.recipe for e in lease2)
    assert all(e.minutes.get("h200") for e in lease1 + lease2)
    methods = {Path(e.recipe).stem for e in lease1}
    for row in ("ce_r100", "ce_drw_r100", "ce_drs_r100", "focal_r100", "cb_focal_r100",
                "ldam_drw_r100", "hybrid_sc_r100", "hybrid_psc_r100", "hybrid_ce_ce_r100"):  # fmt: skip
        assert row in methods


def test_the_cpu_starts_with_cifar100_ce(owed) -> None:
    """Issue 13: the CPU queue's first single-view entries are CIFAR-100-LT r=100 CE, LDAM-DRW, CE-DRW."""
    cpu = [e for e in owed.ordered("cpu") if e.status == "owed" and e.minutes.get("cpu")]
    single = [e for e in cpu if e.minutes["cpu"] < 300 and e.kind == "train"]
    first = ["c100-r100-ce", "c100-r100-ldam-drw", "c100-r100-ce-drw"]
    first = [i for i in first if owed.by_id(i).status == "owed"]  # a done entry leaves the queue
    assert [e.id for e in single[: len(first)]] == first
    assert single[len(first)].id.startswith("c10-r100-")  # then CIFAR-10-LT r=100


def test_priority_cpu_reorders_only_on_a_cpu(owed) -> None:
    on_cpu = [e.id for e in owed.ordered("cpu")]
    on_gpu = [e.id for e in owed.ordered("h200")]
    assert on_cpu[:3] == ["c100-r100-ce", "c100-r100-ldam-drw", "c100-r100-ce-drw"]
    assert on_gpu[0] == "c10-r100-ce"


def test_study_entries_are_single_runs_that_cover_each_study_once(owed, monkeypatch) -> None:
    """A lease command runs whole entries: each study entry is one (method, ratio or set) run, and
    together they are every run of the study's spec, once."""
    from longtail.studies.runner import KINDS
    from longtail.studies.spec import split_overrides

    monkeypatch.chdir(ROOT)
    planned: dict[str, list[tuple]] = {}
    for entry in owed.entries:
        if entry.kind != "study":
            continue
        study, _ = split_overrides(entry.overrides)
        spec = load_spec(entry.recipe, study)
        runs = KINDS[spec.study].plan(spec)
        assert len(runs) == 1, entry.id
        planned.setdefault(entry.recipe, []).append(runs[0].key)
    assert set(planned) == {"recipes/studies/sweep.yaml", "recipes/studies/equal_size.yaml"}
    for recipe, keys in planned.items():
        spec = load_spec(recipe)
        whole = [run.key for run in KINDS[spec.study].plan(spec)]
        assert sorted(keys) == sorted(whole), recipe

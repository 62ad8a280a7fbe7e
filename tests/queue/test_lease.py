"""Lease planning: the entries of one priority, one pack per distinct subset, a command that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.errors import LongtailError
from longtail.queue.lease import COMMAND_LIMIT, plan_lease
from longtail.queue.spec import load_queue

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def owed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    queue = load_queue("reports/results/owed.yaml")
    for entry in queue.entries:  # planning is tested on the whole plan, done entries included
        entry.status = "owed"
    return queue


@pytest.mark.parametrize("priority", [1, 2])
def test_a_lease_runs_its_column_from_one_pack(owed, priority: int) -> None:
    plan = plan_lease(owed, "reports/results/owed.yaml", priority=priority)
    ids = [e.id for e in plan.entries]
    assert ids == [e.id for e in owed.ordered("h200") if e.priority == priority]
    assert len(plan.packs) == 1  # every r=100 recipe of the column trains the same subset
    assert len(plan.command) <= COMMAND_LIMIT
    assert plan.command.endswith("--only " + " ".join(ids))
    assert f"--jobs {len(ids)}" in plan.command and "--out $OUT" in plan.command


def test_only_and_jobs_pick_what_the_lease_runs(owed) -> None:
    plan = plan_lease(owed, "q.yaml", only=["c100-r100-ce", "c100-r100-ldam-drw"], jobs=2)
    assert [e.id for e in plan.entries] == ["c100-r100-ce", "c100-r100-ldam-drw"]
    assert "--jobs 2" in plan.command and "--budget 555" in plan.command


def test_nothing_to_lease_is_a_one_line_error(owed) -> None:
    with pytest.raises(LongtailError, match="no owed GPU entry"):
        plan_lease(owed, "q.yaml", priority=99)

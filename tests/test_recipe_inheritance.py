"""Recipe inheritance (``base:``): the mechanism, and that every shipped recipe resolves as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longtail.config import load_config
from longtail.errors import LongtailError
from resolved_recipes import GOLDEN, resolved, train_recipes
from shared_data import REPO


def test_every_recipe_resolves_to_its_recorded_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipes rewritten on ``base:`` (and all others) give the configs recorded before."""
    monkeypatch.chdir(REPO)
    golden = json.loads(GOLDEN.read_text())
    recipes = train_recipes()
    assert sorted(str(p) for p in recipes) == sorted(golden), "recipes added or removed:" \
        " rewrite the record (python tests/resolved_recipes.py)"  # fmt: skip
    inherited = [p for p in recipes if "\nbase:" in "\n" + p.read_text()]
    assert len(inherited) >= 30  # the r=10 / r=50 rows of CIFAR-10/100-LT
    for path in recipes:
        assert resolved(path) == golden[str(path)], path


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_child_merges_over_its_bases_chain(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "name: a\noptim: {lr: 0.5, momentum: 0.8}\n"
                               "schedule: {milestones: [1, 2, 3]}\n")  # fmt: skip
    _write(tmp_path, "sub/b.yaml", "base: ../a.yaml\nname: b\noptim: {lr: 0.2}\n")
    c = _write(tmp_path, "sub/c.yaml", "base: b.yaml\nschedule: {milestones: [7]}\n")
    cfg = load_config(c)
    assert cfg.name == "b" and cfg.optim.lr == 0.2 and cfg.optim.momentum == 0.8
    assert cfg.schedule.milestones == [7]  # a list is replaced, not merged
    assert cfg.recipe == str(c)  # the run's recipe is the child


def test_a_missing_base_or_a_cycle_is_one_line(tmp_path: Path) -> None:
    missing = _write(tmp_path, "m.yaml", "base: nowhere.yaml\n")
    with pytest.raises(LongtailError, match=r"base: nowhere.yaml in recipe .* does not exist"):
        load_config(missing)
    _write(tmp_path, "x.yaml", "base: y.yaml\n")
    y = _write(tmp_path, "y.yaml", "base: x.yaml\n")
    with pytest.raises(LongtailError, match="inherits from itself"):
        load_config(y)
    bad = _write(tmp_path, "n.yaml", "base: [a.yaml]\n")
    with pytest.raises(LongtailError, match="must be a path"):
        load_config(bad)

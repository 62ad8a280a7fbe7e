"""The queue file: validation with one-line errors, ordering, estimates, and a save that round-trips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from queue_files import HEADER, entry, write_queue

from longtail.errors import LongtailError
from longtail.queue.spec import Entry, load_queue


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    """A recipe file for the entries to name (the queue checks it exists, not what it holds)."""
    path = tmp_path / "recipes" / "r.yaml"
    path.parent.mkdir()
    path.write_text("name: r\n")
    return path


def _load_error(tmp_path: Path, runs: Any, **doc: Any) -> str:
    path = tmp_path / "owed.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "runs": runs, **doc}, sort_keys=False))
    with pytest.raises(LongtailError) as err:
        load_queue(path, root=tmp_path)
    message = str(err.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


def test_valid_queue_loads_with_defaults(tmp_path: Path, recipe: Path) -> None:
    """Optional keys take their defaults; a relative recipe resolves against ``root``."""
    path = write_queue(tmp_path / "owed.yaml", [entry("a", "recipes/r.yaml", "res.json")])
    (only,) = load_queue(path, root=tmp_path).entries
    assert only == Entry(
        id="a", kind="train", recipe="recipes/r.yaml", issue=1, results="res.json", priority=1,
        minutes={"cpu": 0.5}, overrides=[], seed=0, after=None, status="owed", command=None,
    )  # fmt: skip


def _problems(recipe: Path) -> dict[str, tuple[list[Any], str]]:
    """name -> (the runs list, a pattern its error message must match)."""
    ok = entry("a", recipe, "r.json")
    less = {k: v for k, v in ok.items() if k != "minutes"}
    cases: list[tuple[str, list[Any], str]] = [
        ("missing key", [less], r"runs\[0\] lacks minutes"),
        ("not a mapping", ["a"], r"runs\[0\] is not a mapping"),
        ("unknown key", [{**ok, "prority": 2}], r"unknown key 'prority'"),
        ("upper-case id", [{**ok, "id": "C10-CE"}], r"\(C10-CE\): id must be lowercase"),
        ("id with a space", [{**ok, "id": "c10 ce"}], r"id must be lowercase"),
        ("leading dash", [{**ok, "id": "-ce"}], r"id must be lowercase"),
        ("numeric id", [{**ok, "id": 5}], r"id must be lowercase"),
        ("bad kind", [{**ok, "kind": "eval"}], r"kind must be one of train, study, benchmark"),
        ("bad status", [{**ok, "status": "running"}], r"status must be one of owed, done"),
        ("bad priority", [{**ok, "priority": "high"}], r"priority must be an integer"),
        ("bad seed", [{**ok, "seed": "0"}], r"seed must be an integer"),
        ("bad priority_cpu", [{**ok, "priority_cpu": 1.5}], r"priority_cpu must be an integer"),
        ("overrides not a list", [{**ok, "overrides": "a=1"}], r"overrides must be a list"),
        ("override without =", [{**ok, "overrides": ["a"]}], r"overrides must be a list"),
        ("zero minutes", [{**ok, "minutes": {"cpu": 0}}], r"minutes must map"),
        ("negative minutes", [{**ok, "minutes": {"cpu": -3}}], r"minutes must map"),
        ("text minutes", [{**ok, "minutes": {"cpu": "ten"}}], r"minutes must map"),
        ("minutes not a mapping", [{**ok, "minutes": [3]}], r"minutes must map"),
        ("benchmark without command", [{**ok, "kind": "benchmark"}],
         r"a benchmark \(and only it\) has a command"),
        ("train with command", [{**ok, "command": "scripts/x.py"}], r"a benchmark \(and only it\)"),
        ("recipe missing", [{**ok, "recipe": "recipes/gone.yaml"}],
         r"recipe recipes/gone.yaml does not exist"),
        ("duplicate id", [ok, {**ok}], r"id 'a' appears twice"),
        ("after a later id", [{**ok, "after": "b"}, {**ok, "id": "b"}],
         r"a runs after 'b', which is not an earlier entry"),
        ("after an unknown id", [ok, {**ok, "id": "b", "after": "zz"}],
         r"b runs after 'zz', which is not an earlier entry"),
        ("after itself", [{**ok, "after": "a"}], r"a runs after 'a'"),
    ]  # fmt: skip
    return {name: (runs, pattern) for name, runs, pattern in cases}


PROBLEMS = list(_problems(Path("r.yaml")))


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_problem_is_a_one_line_error(tmp_path: Path, recipe: Path, name: str) -> None:
    """Each invalid entry raises LongtailError, on one line, naming the problem."""
    runs, pattern = _problems(recipe)[name]
    message = _load_error(tmp_path, runs)
    assert re.search(pattern, message), message


def test_file_level_problems(tmp_path: Path, recipe: Path) -> None:
    """An unreadable, non-YAML, list-less or future-version file is a one-line error."""
    with pytest.raises(LongtailError, match="cannot read queue"):
        load_queue(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [\n  {id: a\n")
    with pytest.raises(LongtailError, match=r"is not valid YAML at line \d+"):
        load_queue(bad)
    assert "has no 'runs:' list" in _load_error(tmp_path, {"id": "a"})
    assert "is version 2" in _load_error(tmp_path, [], version=2)


def test_null_recipe_is_a_one_line_error(tmp_path: Path, recipe: Path) -> None:
    """``recipe:`` left empty (null) is reported like a missing recipe, not as a traceback."""
    assert "recipe" in _load_error(tmp_path, [{**entry("a", recipe, "r.json"), "recipe": None}])


def test_ordered_by_priority_then_file_order(tmp_path: Path, recipe: Path) -> None:
    """Lower priority first; entries of one priority keep their file order."""
    runs = [entry(i, recipe, "r.json", priority=p) for i, p in [("a", 3), ("b", 1), ("c", 2),
                                                                 ("d", 1), ("e", 3)]]  # fmt: skip
    queue = load_queue(write_queue(tmp_path / "owed.yaml", runs))
    assert [e.id for e in queue.ordered()] == ["b", "d", "c", "a", "e"]
    assert queue.by_id("c").priority == 2
    with pytest.raises(LongtailError, match="has no entry 'zz'"):
        queue.by_id("zz")


def test_priority_cpu_orders_only_on_a_cpu(tmp_path: Path, recipe: Path) -> None:
    """priority_cpu replaces priority on a CPU; other devices (and no device) keep priority."""
    runs = [entry("a", recipe, "r.json", priority=1), entry("b", recipe, "r.json", priority=2),
            entry("c", recipe, "r.json", priority=3, priority_cpu=0)]  # fmt: skip
    queue = load_queue(write_queue(tmp_path / "owed.yaml", runs))
    assert [e.id for e in queue.ordered("cpu")] == ["c", "a", "b"]
    assert (
        [e.id for e in queue.ordered("h200")] == [e.id for e in queue.ordered()] == ["a", "b", "c"]
    )


def test_estimate_seconds_per_device(recipe: Path) -> None:
    """Minutes become seconds; a null or absent device kind has no estimate."""
    e = Entry(**entry("a", recipe, "r.json", minutes={"cpu": 2.5, "h200": None}))
    assert e.estimate_s("cpu") == 150.0
    assert e.estimate_s("h200") is None and e.estimate_s("a100") is None


def test_save_round_trips_and_keeps_the_header(tmp_path: Path, recipe: Path) -> None:
    """load -> save -> load gives equal entries (done records included) and the same header."""
    runs = [
        entry("first", recipe, "r.json", overrides=["optim.lr=0.05"], seed=2,
              minutes={"cpu": 12, "h200": None}),
        entry("second", recipe, "r.json", after="first", priority=0, priority_cpu=-2),
        entry("bench", recipe, "b.json", kind="benchmark", command="benchmarks/x.py --n 3"),
        entry("old", recipe, "r.json", status="done",
              done={"device": "cpu", "run": "x", "top1": 61.5, "date": "2026-01-01"}),
    ]  # fmt: skip
    path = write_queue(tmp_path / "owed.yaml", runs)
    first = load_queue(path)
    assert first.header == HEADER
    first.save()
    text = path.read_text()
    assert text.startswith(HEADER) and "version: 1" in text
    again = load_queue(path)
    assert again.entries == first.entries and again.header == HEADER
    assert again.by_id("second").after == "first" and again.by_id("bench").command
    assert again.by_id("second").priority_cpu == -2 and again.by_id("first").priority_cpu is None
    assert again.by_id("first").minutes == {"cpu": 12, "h200": None}
    again.save()
    assert path.read_text() == text  # a second save is byte-identical


def test_header_is_only_the_leading_comment_block(tmp_path: Path, recipe: Path) -> None:
    """Comments after the first YAML line are not part of the kept header."""
    path = tmp_path / "owed.yaml"
    body = yaml.safe_dump({"runs": [entry("a", recipe, "r.json")]}, sort_keys=False)
    path.write_text("# top\n\n# still top\nversion: 1\n# inside\n" + body)
    assert load_queue(path).header == "# top\n\n# still top\n"

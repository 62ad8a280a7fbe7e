"""Accuracy names: top1 is a trained classifier's; a representation run's monitor is knn_top1."""

from __future__ import annotations

import json
from pathlib import Path

from longtail.eval.monitor import (
    GROUP_KEYS,
    accuracy,
    headline,
    monitor_names,
    monitor_prefix,
    upgrade_record,
)
from longtail.studies.records import merge_records
from longtail.summary import run_summary


def test_monitor_names_prefix_the_accuracies_and_nothing_else() -> None:
    summary = {"top1": 50.0, "many": 60.0, "per_class": [1.0], "tail": None}
    named = monitor_names(summary, monitor_prefix(True))
    assert named == {"knn_top1": 50.0, "knn_many": 60.0, "per_class": [1.0], "knn_tail": None}
    assert monitor_names(summary, monitor_prefix(False)) == summary
    assert set(GROUP_KEYS) >= {"top1", "many", "medium", "few", "head", "middle", "tail"}


def test_accuracy_reads_a_classifier_first_then_the_knn_monitor() -> None:
    assert accuracy({"top1": 1.0, "knn_top1": 2.0}, "top1") == 1.0
    assert accuracy({"top1": None, "knn_top1": 2.0}, "top1") == 2.0
    assert accuracy({"knn_few": 3.0}, "few") == 3.0 and accuracy({}, "few") is None


def test_the_headline_is_a_trained_classifier_then_the_probe_then_the_monitor() -> None:
    assert headline({"top1": 40.0, "probe_top1": 50.0, "knn_top1": 30.0}) == ("top1", 40.0)
    assert headline({"probe_top1": 50.0, "knn_top1": 30.0}) == ("probe_top1", 50.0)
    assert headline({"knn_top1": 30.0}) == ("knn_top1", 30.0)
    assert headline({}) == ("top1", None)


def test_a_legacy_record_is_read_in_todays_names() -> None:
    legacy = {
        "top1": 30.0,
        "many": 31.0,
        "best_top1": 32.0,
        "probe_top1": 50.0,
        "knn_top1": 45.0,  # then: the probe's kNN
        "probe": {"balanced": {"probe_top1": 50.0, "knn_top1": 45.0}, "long_tailed": None},
    }
    classifier = upgrade_record(legacy)
    assert classifier["probe_knn_top1"] == 45.0 and "knn_top1" not in classifier
    assert classifier["top1"] == 30.0 and classifier["probe"]["balanced"]["probe_knn_top1"] == 45.0
    representation = upgrade_record(legacy, representation=True)
    assert representation["knn_top1"] == 30.0 and representation["knn_many"] == 31.0
    assert representation["best_knn_top1"] == 32.0 and representation["probe_knn_top1"] == 45.0
    assert "top1" not in representation and "best_top1" not in representation
    assert legacy["knn_top1"] == 45.0  # the input is left as it was


def test_a_new_record_is_unchanged() -> None:
    new = {"knn_top1": 30.0, "probe_top1": 50.0, "probe_knn_top1": 45.0}
    assert upgrade_record(new, representation=True) == new
    assert upgrade_record({"top1": 1.0, "knn_top1": 2.0}) == {"top1": 1.0, "knn_top1": 2.0}


def test_a_representation_runs_summary_names_its_knn_monitor() -> None:
    final = {"name": "simsiam", "epochs": 2, "knn_top1": 33.333, "knn_many": 40.0,
             "knn_medium": 30.0, "knn_few": 20.0}  # fmt: skip
    lines = run_summary(final).splitlines()
    assert "  kNN top-1  33.33" in lines
    assert "  groups     many 40.00 | medium 30.00 | few 20.00" in lines
    assert not any(line.lstrip().startswith("top-1") for line in lines)


def test_study_records_written_before_the_rename_merge_in_todays_names(tmp_path: Path) -> None:
    path = tmp_path / "sweep.json"
    old = {"method": "ce", "ratio": 1.0, "probe_top1": 50.0, "knn_top1": 45.0}
    path.write_text(json.dumps([old]))
    new = {"method": "ce", "ratio": 10.0, "probe_top1": 40.0, "probe_knn_top1": 35.0}
    merged = merge_records(path, [new], ("method", "ratio"))
    assert merged == [{"method": "ce", "ratio": 1.0, "probe_top1": 50.0, "probe_knn_top1": 45.0},
                      new]  # fmt: skip
    assert json.loads(path.read_text()) == merged

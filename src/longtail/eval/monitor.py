"""What a run's accuracy keys mean, and which one heads it.

``top1`` (and ``mean_class_acc``, ``many`` / ``medium`` / ``few``, ``head`` / ``middle`` / ``tail``)
is always a *trained classifier's* accuracy on the test split. Representation-learning runs (SSL,
SupCon, KCL stage 1) never train their own classifier: their per-epoch evaluation is a kNN
classifier on the frozen backbone, written under the same names prefixed ``knn_`` (``knn_top1``,
``knn_many``, ...; ``best_knn_top1``). The end-of-run probe's numbers are ``probe_top1`` (its linear
classifier) and ``probe_knn_top1`` (its kNN classifier, on the probe's own training set).

Records written before this naming (final.json, study results) used ``knn_top1`` for the probe's
kNN and ``top1`` for a representation run's kNN monitor; :func:`upgrade_record` reads them in
today's names.
"""

from __future__ import annotations

from typing import Any

GROUP_KEYS = ("top1", "mean_class_acc", "many", "medium", "few", "head", "middle", "tail")
KNN_PREFIX = "knn_"
PROBE_KNN = "probe_knn_top1"


def monitor_prefix(representation: bool) -> str:
    """``"knn_"`` for a representation-learning run's kNN monitor, ``""`` for a classifier's."""
    return KNN_PREFIX if representation else ""


def monitor_names(summary: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``summary`` (an evaluation's keys) with its :data:`GROUP_KEYS` renamed ``prefix + key``."""
    return {(prefix + k if k in GROUP_KEYS else k): v for k, v in summary.items()}


def accuracy(record: dict[str, Any], key: str) -> Any:
    """``record[key]`` (a :data:`GROUP_KEYS` name), else its kNN monitor's ``knn_<key>``."""
    value = record.get(key)
    return record.get(KNN_PREFIX + key) if value is None else value


def headline(record: dict[str, Any]) -> tuple[str, float | None]:
    """The number that heads a run and its name: a trained classifier's ``top1``, else the
    end-of-run linear probe's ``probe_top1``, else the kNN monitor's ``knn_top1``."""
    for key in ("top1", "probe_top1", "knn_top1"):
        if record.get(key) is not None:
            return key, float(record[key])
    return "top1", None


def upgrade_record(record: dict[str, Any], representation: bool = False) -> dict[str, Any]:
    """A final.json (or study) record in today's names (module docstring); a new one unchanged.

    A legacy record is one with ``probe_top1`` or ``probe`` but no ``probe_knn_top1``: its
    ``knn_top1`` was the probe's kNN (its probe sets' alike). When the run is known to be a
    representation-learning run, its ``top1`` etc. (the kNN monitor) become ``knn_top1`` etc.
    """
    legacy = PROBE_KNN not in record and ("probe_top1" in record or "probe" in record)
    if not legacy:
        return record
    out = _renamed(record, {"knn_top1": PROBE_KNN})
    if representation:
        out = _renamed(monitor_names(out, KNN_PREFIX), {"best_top1": "best_knn_top1"})
    probes = out.get("probe")
    if isinstance(probes, dict):
        out["probe"] = {
            name: _upgrade_probe(p) if isinstance(p, dict) else p for name, p in probes.items()
        }
    return out


def _upgrade_probe(probe: dict[str, Any]) -> dict[str, Any]:
    return probe if PROBE_KNN in probe else _renamed(probe, {"knn_top1": PROBE_KNN})


def _renamed(record: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A copy of ``record`` with keys renamed by ``names``, in the same order."""
    return {names.get(k, k): v for k, v in record.items()}

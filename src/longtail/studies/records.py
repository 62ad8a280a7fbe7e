"""Results records of a study: built from a run's final.json, merged into the results file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longtail.config import Config
from longtail.errors import LongtailError
from longtail.eval.monitor import upgrade_record
from longtail.io import atomic_write_json


def run_fields(
    cfg: Config, final: dict[str, Any], run: Path, keys: Sequence[str]
) -> dict[str, Any]:
    """The record fields every study shares, in ``keys`` order.

    ``total`` is the size of the run's training subset (the sum of final.json's ``train_counts``),
    ``epochs`` the run's ``train.epochs``, ``recipe`` the recipe path as the spec gives it and
    ``run`` the run folder, ``num_classes`` the number of classes (the plots' chance line),
    ``shortened`` whether the run did less than its recipe; any other key is final.json's value
    (``None`` when absent).
    """
    own = {
        "total": sum(int(n) for n in final.get("train_counts") or []),
        "num_classes": len(final.get("train_counts") or []) or None,
        "shortened": bool(final.get("shortened")),
        "epochs": cfg.train.epochs,
        "recipe": cfg.recipe,
        "run": str(run),
    }
    return {key: own[key] if key in own else final.get(key) for key in keys}


def merge_records(
    path: Path, records: list[dict[str, Any]], key_fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Existing records of ``path`` less those with a key in ``records``, plus ``records``, sorted.

    Writes the merged list atomically and returns it.
    """
    existing: list[dict[str, Any]] = []
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise LongtailError(f"{path} is not valid JSON: fix or remove it") from None
        if isinstance(existing, list):  # records from before probe_knn_top1 (eval/monitor.py)
            existing = [upgrade_record(r) if isinstance(r, dict) else r for r in existing]
        if "seed" in key_fields and isinstance(existing, list):  # records from before seeds:
            for r in existing:  # each was the study's one run, at the default seed
                if isinstance(r, dict):
                    r.setdefault("seed", 0)
        valid = isinstance(existing, list) and all(
            isinstance(r, dict) and all(k in r for k in key_fields) for r in existing
        )
        if not valid:
            raise LongtailError(
                f"{path} is not a list of records keyed by {', '.join(key_fields)}: point"
                " study.results at this study's own results file"
            )

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(record[k] for k in key_fields)

    fresh = {key(r) for r in records}
    merged = [r for r in existing if key(r) not in fresh] + records
    merged.sort(key=key)
    atomic_write_json(path, merged)
    return merged


def fmt(value: float | None, digits: int = 2, std: float | None = None) -> str:
    """A table cell: the number (± its std over seeds when given), or an en dash when missing."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def over_seeds(
    records: list[dict[str, Any]], group: tuple[str, ...], values: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One record per ``group`` key: each of ``values`` the mean over its seeds, with
    ``<value>_std`` (population std; None for one seed) and ``n_seeds``; other fields from the
    first seed's record. Order: first appearance."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in group), []).append(r)
    out = []
    for members in groups.values():
        merged = dict(members[0])
        merged["n_seeds"] = len(members)
        for key in values:
            present = [float(m[key]) for m in members if m.get(key) is not None]
            mean = sum(present) / len(present) if present else None
            merged[key] = mean
            spread = None
            if mean is not None and len(present) > 1:
                spread = (sum((v - mean) ** 2 for v in present) / len(present)) ** 0.5
            merged[f"{key}_std"] = spread
        out.append(merged)
    return out


def methods_in_order(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in records))


def plot_title(study: str, records: list[dict[str, Any]]) -> str:
    """A study plot's title: what it is, the runs' epochs and sizes, and "shortened" if any was."""
    epochs = sorted({r["epochs"] for r in records if r.get("epochs") is not None})
    totals = sorted({r["total"] for r in records if r.get("total") is not None})
    parts = [f"{', '.join(map(str, epochs))} epochs"] if epochs else []
    if totals:
        parts.append(f"{', '.join(f'{t:,}' for t in totals)} training images")
    if any(r.get("shortened") for r in records):
        parts.append("shortened runs")
    return study + (f" ({'; '.join(parts)})" if parts else "")


def chance(records: list[dict[str, Any]]) -> float | None:
    """Chance top-1 (%) of the records' classes, when they all have the same known count."""
    counts = {r.get("num_classes") for r in records}
    if len(counts) != 1 or None in counts:
        return None
    return 100.0 / float(counts.pop())  # type: ignore[arg-type]

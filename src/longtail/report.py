"""Results tables from run folders: ``longtail report RUN_DIR ... --results FILE.json``.

Completed full-protocol runs (none :func:`longtail.protocol.shortened`) are grouped
by (method, dataset, ratio, recipe); each group becomes one record of the results schema in
CONVENTIONS.md (mean and population std of last-epoch top-1 over seeds, group means, the paper's
number, device, commit). Records merge into the results JSON (a re-run replaces its record) and a
markdown table is written beside it: method x ratio, ours vs paper, and each method's gap to our
own CE vs the paper's gap to its CE (the honest comparison on the JPEG-degraded CIFAR-10 copy), one
table per dataset. Every run left out is listed with the reason; when none of the runs given enters
a table, nothing is written and the command fails.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.io import atomic_write_json, atomic_write_text
from longtail.protocol import setting, shortened, source_dataset
from longtail.run_folder import FINAL, RunFolder
from longtail.strategies.registry import trains_classifier

GROUPS = ("many", "medium", "few", "head", "middle", "tail")


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 2) if present else None


def _left_out(run: RunFolder, cfg: Any) -> str | None:
    """Why a run enters no results table; None when it does."""
    if not run.file(FINAL).is_file():
        return f"not finished (status {run.read_state()}, no final.json)"
    cut = shortened(cfg)
    if cut:  # a shortened run never enters a results table (protocol.py)
        return "shortened: " + "; ".join(cut)
    if not trains_classifier(cfg.strategy.name):  # top1 is a trained classifier's (eval/monitor.py)
        return ("a representation-learning run, no trained classifier (its probe_top1 is in"
                " final.json): tabulate it with a study, or train its classifier stage")  # fmt: skip
    if cfg.method is None:  # e.g. the first stage of a two-stage method, or the demo
        return "no method name (a results row needs method=..., CONVENTIONS.md)"
    return None


def collect(
    run_dirs: Sequence[str | Path], skipped: list[str] | None = None
) -> list[dict[str, Any]]:
    """One results record per (method, dataset, ratio, recipe) over the completed full runs given.

    ``skipped`` (if given) receives one ``"RUN: why"`` line per run left out.
    """
    groups: dict[tuple[str, str, float, str], list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for run_dir in run_dirs:
        run = RunFolder.open(run_dir)
        cfg = run.read_config()
        why = _left_out(run, cfg)
        if why is not None:
            if skipped is not None:
                skipped.append(f"{run.path}: {why}")
            continue
        final = json.loads(run.file(FINAL).read_text())
        key = (str(cfg.method), source_dataset(cfg), cfg.data.imbalance_ratio, cfg.recipe or "")
        groups[key].append((cfg, final))
    records = []
    for (method, dataset, ratio, recipe), runs in sorted(groups.items()):
        runs.sort(key=lambda pair: pair[0].train.seed)
        _check_same_setting(method, ratio, [c for c, _ in runs])
        top1 = [final["top1"] for _, final in runs]
        cfg, last = runs[-1]
        records.append(
            {
                "method": method,
                "dataset": dataset,
                "ratio": ratio,
                "top1_mean": round(statistics.fmean(top1), 2),
                "top1_std": round(statistics.pstdev(top1), 2),
                "seeds": [c.train.seed for c, _ in runs],
                "top1_per_seed": [round(t, 2) for t in top1],
                "top1_best_epoch_mean": _mean(f.get("best_top1") for _, f in runs),
                **{g: _mean(f.get(g) for _, f in runs) for g in GROUPS},
                "paper_top1": cfg.paper.top1,
                "epochs": cfg.train.epochs,
                "device": last.get("device"),
                "commit": last.get("commit"),
                "recipe": recipe,
                "train_s": _mean(f.get("train_s") for _, f in runs),
            }
        )
    return records


def _check_same_setting(method: str, ratio: float, configs: list[Any]) -> None:
    """Seeds of one row must be the same setting, each seed once (else the std is wrong)."""
    seeds = [c.train.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise LongtailError(
            f"{method} r={ratio:g} has two runs with the same seed: pass each seed's run once"
        )
    first = setting(configs[0])
    if any(setting(c) != first for c in configs[1:]):
        raise LongtailError(
            f"{method} r={ratio:g} mixes runs of different settings: give an ablation its own"
            " method name (method=<method>+<change>)"
        )


def merge(results_path: Path, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``records`` into the JSON list at ``results_path``; a record's key replaces its twin."""
    existing: list[dict[str, Any]] = []
    if results_path.is_file():
        try:
            existing = json.loads(results_path.read_text())
        except json.JSONDecodeError:
            raise LongtailError(f"{results_path} is not valid JSON: fix or remove it") from None
    for r in existing:  # a record written before records carried their dataset
        if "dataset" not in r:
            r["dataset"] = _recipe_dataset(r.get("recipe"))

    def replaced(old: dict[str, Any]) -> bool:  # a legacy record of unknown dataset matches any
        row = (old["method"], old["ratio"], old["recipe"])
        return any(
            row == (r["method"], r["ratio"], r["recipe"])
            and old.get("dataset") in (None, r.get("dataset"))
            for r in records
        )

    merged = [r for r in existing if not replaced(r)] + records
    merged.sort(key=lambda r: (r.get("dataset") or "", r["method"], -r["ratio"]))
    atomic_write_json(results_path, merged)
    return merged


def _recipe_dataset(recipe: str | None) -> str | None:
    """The dataset a legacy record's recipe trains on (None when the recipe cannot be read)."""
    if not recipe or not Path(recipe).is_file():
        return None
    try:
        return source_dataset(load_config(recipe))
    except LongtailError:
        return None


def markdown_table(records: list[dict[str, Any]], baseline: str = "CE") -> str:
    """Method x ratio: ours ± std (seeds) | paper | our gap to our CE | paper's gap to its CE.

    One table per dataset (a heading above each when there are several): the same method and
    ratio on two datasets are two rows of two tables, never one.
    """
    datasets = list(dict.fromkeys(r.get("dataset") for r in records))
    if len(datasets) <= 1:
        return _one_table(records, baseline)
    return "\n".join(
        f"### {dataset or 'dataset not recorded'}\n\n"
        + _one_table([r for r in records if r.get("dataset") == dataset], baseline)
        for dataset in datasets
    )


def _one_table(records: list[dict[str, Any]], baseline: str) -> str:
    ratios = sorted({r["ratio"] for r in records}, reverse=True)
    by = {(r["method"], r["ratio"]): r for r in records}
    methods = list(dict.fromkeys(r["method"] for r in records))
    head = "| method | " + " | ".join(f"r={r:g} ours | paper | Δ ours | Δ paper" for r in ratios)
    lines = [head + " |", "|---|" + "---|---|---|---|" * len(ratios)]
    for method in methods:
        cells = []
        for ratio in ratios:
            rec, base = by.get((method, ratio)), by.get((baseline, ratio))
            if rec is None:
                cells += ["–"] * 4
                continue
            seeds = len(rec["seeds"])
            ours = f"{rec['top1_mean']:.2f} ± {rec['top1_std']:.2f} ({seeds})"
            paper = f"{rec['paper_top1']:.2f}" if rec["paper_top1"] is not None else "–"
            d_ours = f"{rec['top1_mean'] - base['top1_mean']:+.2f}" if base else "–"
            paper_base = base["paper_top1"] if base else None
            both = rec["paper_top1"] is not None and paper_base is not None
            d_paper = f"{rec['paper_top1'] - paper_base:+.2f}" if both else "–"
            cells += [ours, paper, d_ours, d_paper]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report(
    run_dirs: Sequence[str | Path], results_path: Path, skipped: list[str] | None = None
) -> str:
    """Collect, merge into ``results_path``, write ``<results>.md`` beside it; return the table.

    ``skipped`` receives the runs left out and why. Raises LongtailError, writing nothing, when
    no run given enters a table.
    """
    if not run_dirs:
        raise LongtailError(
            "longtail report needs run folders: longtail report RESULTS.json runs/*"
        )
    left_out: list[str] = []
    records = collect(run_dirs, left_out)
    if skipped is not None:
        skipped.extend(left_out)
    if not records:
        raise LongtailError(
            f"none of the {len(run_dirs)} runs enters a results table ({left_out[0]}"
            + (f"; and {len(left_out) - 1} more" if len(left_out) > 1 else "")
            + "): report full-protocol runs that have a method name"
        )
    merged = merge(results_path, records)
    table = markdown_table(merged)
    atomic_write_text(results_path.with_suffix(".md"), table)
    return table

"""Study 1 (paper 000): training sets of one size from balanced (r=1) to r=100, a run per method.

Every run trains on ``data.total`` images drawn with the exponential profile at ratio r, so only
the imbalance changes along the sweep. The frozen backbone is then probed on a balanced set: the
probe top-1 says how good the representation is, the few/many ratio (few-class over many-class
per-class probe accuracy, 1 = balanced) how evenly it serves the classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longtail.config import Config
from longtail.io import atomic_write
from longtail.studies.records import (
    chance,
    fmt,
    methods_in_order,
    over_seeds,
    plot_title,
    run_fields,
)
from longtail.studies.spec import RunPlan, StudyKind, StudySpec, file_safe, seeded

RECORD_KEYS = (
    "method", "ratio", "total", "epochs", "probe_top1", "probe_knn_top1", "few_many_ratio", "slope",
    "cv", "device", "commit", "recipe", "run", "num_classes", "shortened", "seed",
)  # fmt: skip


def controlled(spec: StudySpec) -> set[str]:
    return {"name", "method", "data.imbalance_ratio", "data.total", "train.seed"}


def plan(spec: StudySpec) -> list[RunPlan]:
    """One run per (method, ratio, seed), methods in spec order, ratios ascending within each."""
    runs = []
    for method, recipe in spec.methods.items():
        for ratio in sorted(spec.ratios):
            for seed in spec.seeds:
                overrides = [
                    f"data.imbalance_ratio={ratio:g}",
                    f"data.total={spec.total}",
                    *seeded(seed, f"sweep-{file_safe(method)}-r{ratio:g}"),
                    f"method={method}",
                ]
                label = f"r={ratio:g}" + (f" seed {seed}" if len(spec.seeds) > 1 else "")
                runs.append(RunPlan((method, ratio, seed), method, recipe, label, overrides))
    return runs


def record(run_plan: RunPlan, cfg: Config, final: dict[str, Any], run: Path) -> dict[str, Any]:
    fields = run_fields(cfg, final, run, RECORD_KEYS)
    fields["method"], fields["ratio"], fields["seed"] = run_plan.key
    return fields


VALUES = ("probe_top1", "probe_knn_top1", "few_many_ratio", "slope", "cv")


def table(records: list[dict[str, Any]]) -> str:
    """Method x ratio; each cell 'probe top-1 / few-many ratio' (mean ± std over seeds)."""
    records = over_seeds(records, ("method", "ratio"), VALUES)
    ratios = sorted({r["ratio"] for r in records})
    by = {(r["method"], r["ratio"]): r for r in records}
    totals = sorted({r["total"] for r in records if r.get("total") is not None})
    epochs = sorted({r["epochs"] for r in records if r.get("epochs") is not None})
    lines = [
        "Balanced linear-probe top-1 (%) / few-to-many per-class probe accuracy ratio"
        f" (1 = balanced) of the frozen backbone; training sets of {', '.join(map(str, totals))}"
        f" images, {', '.join(map(str, epochs))} epochs.",
        "",
        "| method | " + " | ".join(f"r={r:g}" for r in ratios) + " |",
        "|---|" + "---|" * len(ratios),
    ]
    for method in methods_in_order(records):
        cells = []
        for ratio in ratios:
            rec = by.get((method, ratio))
            cells.append(
                "–"
                if rec is None
                else f"{fmt(rec.get('probe_top1'), std=rec.get('probe_top1_std'))} /"
                f" {fmt(rec.get('few_many_ratio'), std=rec.get('few_many_ratio_std'))}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Two panels against r (log x): probe top-1, and few/many ratio; a line per method, with
    error bars of one std over seeds where there are several."""
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.5 s to import

    records = over_seeds(records, ("method", "ratio"), VALUES)
    ratios = sorted({r["ratio"] for r in records})
    fig = Figure(figsize=(10.0, 4.0), dpi=120, layout="constrained")
    panels = fig.subplots(1, 2)
    metrics = (("probe_top1", "balanced linear-probe top-1 (%)"),
               ("few_many_ratio", "few / many probe accuracy (1 = balanced)"))  # fmt: skip
    for ax, (key, label) in zip(panels, metrics, strict=True):
        for method in methods_in_order(records):
            points = sorted(
                (r["ratio"], r[key], r.get(f"{key}_std") or 0.0)
                for r in records
                if r["method"] == method and r.get(key) is not None
            )
            if points:
                xs, ys, errs = zip(*points, strict=True)
                ax.errorbar(xs, ys, yerr=errs if any(errs) else None, marker="o", capsize=3,
                            label=method)  # fmt: skip
        if key == "few_many_ratio":
            ax.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="balanced (1)")
            ax.set_ylim(bottom=0)  # from 0: the distance to 1 is the imbalance
        else:
            level = chance(records)
            if level is not None:
                ax.axhline(level, color="gray", linestyle="--", linewidth=1, label="chance")
            ax.set_ylim(0, 100)
        ax.set_xscale("log")
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_xlabel("imbalance ratio r = n_max / n_min (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="major", alpha=0.3)
    panels[0].legend(loc="best", fontsize=8)
    fig.suptitle(plot_title("Accuracy and balancedness from balanced to long-tailed training sets",
                            records), fontsize=10)  # fmt: skip
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))


SWEEP = StudyKind(
    key_fields=("method", "ratio", "seed"),
    controlled=controlled,
    plan=plan,
    record=record,
    table=table,
    plot=plot,
)

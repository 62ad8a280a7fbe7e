"""Study 2 (paper 002): pre-training on a balanced set vs a long-tailed set of the same size.

Each method pre-trains once per pre-training set (e.g. a balanced CIFAR-10 subset and
CIFAR-10-LT r=100, both 12,406 images); its frozen backbone is then probed in domain (a balanced
probe set of the same dataset) and out of domain (``probe.ood``). The balanced - imbalanced gap
per method says how much the imbalance of the pre-training data costs that method's features.
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
    "method", "pretrain", "total", "epochs", "probe_top1", "ood_probe_top1", "probe_knn_top1",
    "few_many_ratio", "device", "commit", "recipe", "run", "num_classes", "shortened", "seed",
)  # fmt: skip
GAP = ("balanced", "imbalanced")  # the gap reported is GAP[0] - GAP[1]
DOMAINS = (("probe_top1", "in-domain"), ("ood_probe_top1", "OOD"))


def controlled(spec: StudySpec) -> set[str]:
    """``name``, ``method`` and every key a pre-training set sets (it must hold for all runs)."""
    keys = {o.split("=", 1)[0].strip() for sets in spec.pretrain.values() for o in sets}
    return keys | {"name", "method", "train.seed"}


def plan(spec: StudySpec) -> list[RunPlan]:
    """One run per (method, pre-training set, seed), in spec order."""
    runs = []
    for method, recipe in spec.methods.items():
        for pretrain, overrides in spec.pretrain.items():
            for seed in spec.seeds:
                name = f"equal-{file_safe(method)}-{pretrain}"
                own = [*overrides, *seeded(seed, name), f"method={method}"]
                label = pretrain + (f" seed {seed}" if len(spec.seeds) > 1 else "")
                runs.append(RunPlan((method, pretrain, seed), method, recipe, label, own))
    return runs


def record(run_plan: RunPlan, cfg: Config, final: dict[str, Any], run: Path) -> dict[str, Any]:
    fields = run_fields(cfg, final, run, RECORD_KEYS)
    fields["method"], fields["pretrain"], fields["seed"] = run_plan.key
    return fields


def _pretrain_names(records: list[dict[str, Any]]) -> list[str]:
    present = {r["pretrain"] for r in records}
    return [p for p in GAP if p in present] + sorted(present - set(GAP))


def _gap(by: dict[tuple[str, str], dict[str, Any]], method: str, key: str) -> float | None:
    first, second = by.get((method, GAP[0])), by.get((method, GAP[1]))
    if first is None or second is None or first.get(key) is None or second.get(key) is None:
        return None
    return float(first[key] - second[key])


VALUES = ("probe_top1", "ood_probe_top1", "probe_knn_top1", "few_many_ratio")


def table(records: list[dict[str, Any]]) -> str:
    """Per method: linear-probe top-1 per pre-training set (mean ± std over seeds) and the gap
    of the means, in domain and OOD."""
    records = over_seeds(records, ("method", "pretrain"), VALUES)
    names = _pretrain_names(records)
    by = {(r["method"], r["pretrain"]): r for r in records}
    head, rule = ["method"], ["---"]
    for _, domain in DOMAINS:
        head += [f"{domain} {n}" for n in names] + [f"{domain} gap"]
        rule += ["---"] * (len(names) + 1)
    epochs = sorted({r["epochs"] for r in records if r.get("epochs") is not None})
    lines = [
        "Linear-probe top-1 (%) of the frozen backbone after pre-training on each set; gap ="
        f" {GAP[0]} - {GAP[1]}; {', '.join(map(str, epochs))} epochs.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(rule) + "|",
    ]
    for method in methods_in_order(records):
        cells = [method]
        for key, _ in DOMAINS:
            for name in names:
                rec = by.get((method, name))
                cells.append("–" if rec is None else fmt(rec.get(key), std=rec.get(f"{key}_std")))
            gap = _gap(by, method, key)
            cells.append("–" if gap is None else f"{gap:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars, one group per method, one bar per pre-training set (the mean over seeds,
    an error bar of one std where there are several); in-domain and OOD panels."""
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.5 s to import

    records = over_seeds(records, ("method", "pretrain"), VALUES)
    names = _pretrain_names(records)
    methods = methods_in_order(records)
    by = {(r["method"], r["pretrain"]): r for r in records}
    width = 0.8 / max(len(names), 1)
    fig = Figure(figsize=(10.0, 4.0), dpi=120, layout="constrained")
    panels = fig.subplots(1, 2, sharey=True)
    for ax, (key, domain) in zip(panels, DOMAINS, strict=True):
        for j, name in enumerate(names):
            xs, heights, errs = [], [], []
            for i, method in enumerate(methods):
                rec = by.get((method, name))
                if rec is not None and rec.get(key) is not None:
                    xs.append(i + (j - (len(names) - 1) / 2) * width)
                    heights.append(rec[key])
                    errs.append(rec.get(f"{key}_std") or 0.0)
            bars = ax.bar(xs, heights, width=width, label=name,
                          yerr=errs if any(errs) else None, capsize=3)  # fmt: skip
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(methods)), methods)
        level = chance(records) if key == "probe_top1" else None  # the OOD set's classes differ
        if level is not None:
            ax.axhline(level, color="gray", linestyle="--", linewidth=1, label="chance")
        ax.set_ylim(0, 100)
        ax.set_title(f"{domain} linear probe")
        ax.set_ylabel("top-1 (%)")
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="pre-trained on")
    fig.suptitle(plot_title("Balanced vs long-tailed pre-training of equal size", records),
                 fontsize=10)  # fmt: skip
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))


EQUAL_SIZE = StudyKind(
    key_fields=("method", "pretrain", "seed"),
    controlled=controlled,
    plan=plan,
    record=record,
    table=table,
    plot=plot,
)

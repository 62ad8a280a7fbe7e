"""The pages a person reads in a finished run folder: learning curves and ``report.md``.

* ``curves.png``: training loss, test top-1 (with the class groups when measured) and the learning
  rate per epoch, from metrics.jsonl;
* ``report.md``: the summary table (:mod:`longtail.summary`), the plots, and every config value
  that differs from the recipe the run came from (what makes this run this run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longtail.config import Config, load_config, to_dict
from longtail.errors import LongtailError
from longtail.eval.monitor import accuracy
from longtail.io import atomic_write, atomic_write_text
from longtail.summary import run_summary

CURVES = "curves.png"
REPORT = "report.md"
GROUPS = (("head", "middle", "tail"), ("many", "medium", "few"))


def plot_curves(metrics: list[dict[str, Any]], path: Path, title: str) -> None:
    """Three panels over epochs: train loss; top-1 and its groups (where evaluated); lr (log)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]
    fig = Figure(figsize=(10.0, 3.4), dpi=110, layout="constrained")
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    loss_ax.plot(epochs, [m["train_loss"] for m in metrics], color="tab:blue")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="training loss")
    evaluated = [m for m in metrics if accuracy(m, "top1") is not None]
    if evaluated:
        xs = [m["epoch"] for m in evaluated]
        knn = evaluated[0].get("top1") is None  # a representation run's kNN monitor
        acc_ax.plot(xs, [accuracy(m, "top1") for m in evaluated], marker=".", color="black",
                    label="kNN top-1" if knn else "top-1")  # fmt: skip
        for names in GROUPS:  # head/middle/tail for <= 20 classes, else many/medium/few
            if not any(accuracy(m, n) is not None for m in evaluated for n in names):
                continue
            for name, style in zip(names, ("-", "--", ":"), strict=True):
                ys = [accuracy(m, name) for m in evaluated]
                acc_ax.plot(xs, [float("nan") if y is None else y for y in ys], marker=".",
                            linestyle=style, alpha=0.8, label=name)  # fmt: skip
            break
        acc_ax.legend(fontsize=7, loc="best")
    acc_ax.set_ylim(0, 100)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    lrs = [m["lr"] for m in metrics]
    lr_ax.plot(epochs, lrs, color="tab:green")
    if all(v > 0 for v in lrs):
        lr_ax.set_yscale("log")
    lr_ax.set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    atomic_write(path, lambda handle: fig.savefig(handle, format="png"))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(cfg: Config) -> list[tuple[str, Any, Any]]:
    """(key, the recipe's value, this run's) for every value that differs; [] without a recipe."""
    if not cfg.recipe or not Path(cfg.recipe).is_file():
        return []
    try:
        recipe = _flat(to_dict(load_config(cfg.recipe)))
    except LongtailError:  # the recipe changed since: nothing reliable to compare with
        return []
    run = _flat(to_dict(cfg))
    return [(k, recipe.get(k), v) for k, v in run.items() if recipe.get(k) != v]


def write_report(folder: Path, cfg: Config, final: dict[str, Any], plots: list[str]) -> None:
    """``folder/report.md``: the summary, the plots that exist, the config's differences."""
    lines = [f"# {cfg.name}" + (f" ({cfg.method})" if cfg.method else ""), ""]
    lines += ["```", run_summary(final), "```", ""]
    for name in plots:
        if (folder / name).is_file():
            lines += [f"![{name}]({name})", ""]
    diffs = config_differences(cfg)
    where = f"the recipe {cfg.recipe}" if cfg.recipe else "the defaults (no recipe)"
    lines += [f"## How this run differs from {where}", ""]
    if diffs:
        lines += ["| key | recipe | this run |", "|---|---|---|"]
        lines += [f"| `{k}` | {a} | {b} |" for k, a, b in diffs]
    else:
        lines.append("Nothing: the recipe as written." if cfg.recipe else "No recipe to compare.")
    lines += ["", "The resolved config is config.yaml; every number above is final.json's.", ""]
    atomic_write_text(folder / REPORT, "\n".join(lines))

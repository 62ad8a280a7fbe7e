"""The short table a finished run prints: what it reached, on which groups, how balanced, how fast.

Built from the run's final.json alone (so ``longtail train`` and anything that reads a run folder
print the same thing); every number is final.json's, rounded to two decimals.
"""

from __future__ import annotations

from typing import Any

from longtail.eval.monitor import PROBE_KNN, accuracy, upgrade_record

LABEL = 10  # width of the row labels


def _num(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _row(label: str, text: str) -> str:
    return f"  {label:<{LABEL}} {text}"


def _groups(final: dict[str, Any]) -> str | None:
    """many / medium / few, or head / middle / tail for sets of <= 20 classes (CONVENTIONS.md)."""
    for names in (("head", "middle", "tail"), ("many", "medium", "few")):
        if any(accuracy(final, n) is not None for n in names):
            return " | ".join(f"{n} {_num(accuracy(final, n))}" for n in names)
    return None


def run_summary(final: dict[str, Any]) -> str:
    """A few aligned lines (no trailing newline) from a final.json record.

    A representation run's kNN monitor is the ``kNN top-1`` row (its groups are the kNN's).
    """
    final = upgrade_record(final)
    name = final.get("name", "run")
    method = final.get("method")
    lines = [f"{name}" + (f" ({method})" if method else "")]
    cut = final.get("shortened") or []
    epochs = f"{final.get('epochs')}" + (f" (shortened: {'; '.join(cut)})" if cut else "")
    lines.append(_row("epochs", epochs))
    if final.get("wall_s") is not None:
        lines.append(_row("time", f"{_duration(final['wall_s'])} on {final.get('device', '?')}"))
    label = (
        "top-1" if final.get("top1") is not None or final.get("knn_top1") is None else "kNN top-1"
    )
    top1 = _num(accuracy(final, "top1"))
    paper = final.get("paper_top1")
    lines.append(_row(label, top1 + (f"  (paper {_num(paper)})" if paper is not None else "")))
    groups = _groups(final)
    if groups:
        lines.append(_row("groups", groups))
    probe = final.get("probe") or {}
    shown = probe.get("balanced") or probe.get("long_tailed")
    if shown:
        which = "balanced" if probe.get("balanced") else "long-tailed"
        size = shown.get("train_size")
        images = f", {size:,} images" if isinstance(size, int) else ""
        lines.append(_row("probe", f"linear {_num(shown.get('probe_top1'))} | kNN"
                                   f" {_num(shown.get(PROBE_KNN))} ({which} set{images})"))  # fmt: skip
        ratio = "tail/head" if final.get("head") is not None else "few/many"
        lines.append(_row("balance", f"{ratio} {_num(shown.get('few_many_ratio'))} | slope"
                                     f" {_num(shown.get('slope'))} | cv {_num(shown.get('cv'))}"))  # fmt: skip
    if final.get("ood_probe_top1") is not None:
        lines.append(_row("OOD probe", f"linear {_num(final['ood_probe_top1'])}"))
    return "\n".join(lines)

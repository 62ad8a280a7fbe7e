"""Per-class test accuracy against training count: where the long tail loses accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from longtail.errors import LongtailError
from longtail.io import atomic_write

MAX_LABELLED_CLASSES = 20


def plot_per_class_accuracy(
    per_class: Sequence[float | None],
    train_counts: Sequence[int],
    path: Path,
    *,
    title: str,
    class_names: Sequence[str] | None = None,
    many_threshold: int = 100,
    few_threshold: int = 20,
) -> None:
    """Write a PNG: x = training count (log scale), y = per-class test accuracy (percent).

    Args:
        per_class: accuracy of each class in percent, ``None`` (or NaN) for a class absent from the
            evaluation set; such classes are left out and counted in the legend.
        train_counts: training images per class, same length.
        path: the PNG to write; written to a temporary file in the same folder and then renamed, so
            a reader never sees half a file.
        title: figure title.
        class_names: names to label points with when C <= 20 (class ids are used without them).
        many_threshold, few_threshold: the many/medium/few boundaries, drawn as vertical lines.
    """
    from matplotlib.figure import Figure  # lazy: matplotlib costs ~0.5 s to import

    num_classes = len(train_counts)
    if len(per_class) != num_classes:
        raise LongtailError(
            f"per_class has {len(per_class)} entries but train_counts {num_classes}: "
            "pass one accuracy and one training count per class"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise LongtailError(
            f"class_names has {len(class_names)} entries for {num_classes} classes: "
            "pass one name per class or none"
        )
    names = [str(c) for c in range(num_classes)] if class_names is None else list(class_names)
    shown = [
        (int(n), float(a), name)
        for n, a, name in zip(train_counts, per_class, names, strict=True)
        if a is not None and a == a  # a == a is False for NaN
    ]
    absent = num_classes - len(shown)

    fig = Figure(figsize=(7.0, 4.5), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    if shown:
        xs = [n for n, _, _ in shown]
        ys = [a for _, a, _ in shown]
        label = "class" if absent == 0 else f"class ({absent} absent from evaluation, not shown)"
        ax.scatter(xs, ys, s=28, color="tab:blue", zorder=3, label=label)
        if num_classes <= MAX_LABELLED_CLASSES:
            low, high = math.log(max(min(xs), 1)), math.log(max(max(xs), 1))
            for x, y, name in shown:
                # labels of the right-most points go to their left: they stay inside the figure
                right = high > low and (math.log(max(x, 1)) - low) / (high - low) > 0.7
                ax.annotate(name, (x, y), xytext=(-4 if right else 4, 4), fontsize=8,
                            textcoords="offset points", ha="right" if right else "left")  # fmt: skip
        mean = sum(ys) / len(ys)
        ax.axhline(mean, color="tab:red", linestyle="--", label=f"mean per-class acc {mean:.1f}%")
    # A class with 0 training images has no place on a log axis; symlog is linear below 1.
    if any(n <= 0 for n in train_counts):
        ax.set_xscale("symlog", linthresh=1.0)
    else:
        ax.set_xscale("log")
    ax.axvline(few_threshold, color="gray", linestyle=":", label=f"few < {few_threshold} <= medium")
    ax.axvline(
        many_threshold, color="black", linestyle=":", label=f"medium <= {many_threshold} < many"
    )
    ax.set_ylim(-2.0, 102.0)
    ax.set_xlabel("training images per class (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10, wrap=True)
    ax.grid(True, which="major", alpha=0.3)
    ax.margins(x=0.08)  # room for the labels of the outermost points
    ax.legend(loc="best", fontsize=8)

    atomic_write(Path(path), lambda handle: fig.savefig(handle, format="png"))

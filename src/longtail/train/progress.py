"""Progress display: one tqdm bar over the whole run (epoch, step, loss, images/s, ETA)."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from longtail.eval.monitor import accuracy


class Progress:
    """A bar over all remaining steps; a plain line per epoch when the bar is off or not a TTY."""

    def __init__(self, total: int, batch_size: int, enabled: bool = True) -> None:
        self.batch_size = batch_size
        self.epoch_steps = 0
        self._epochs_done = 0
        self.start = time.perf_counter()
        self._epoch_start = self.start
        self.bar: tqdm[Any] | None = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)
        self.enabled = enabled

    @property
    def wall_s(self) -> float:
        return time.perf_counter() - self.start

    def update(self, steps: int, epoch: int, epochs: int, loss: float) -> None:
        self.epoch_steps += steps
        if self.bar is None:
            return
        rate = (
            self.epoch_steps * self.batch_size / max(time.perf_counter() - self._epoch_start, 1e-9)
        )
        self.bar.set_description(f"epoch {epoch + 1}/{epochs}", refresh=False)
        self.bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:,.0f}", refresh=False)
        self.bar.update(steps)

    def end_epoch(self, record: dict[str, Any], epochs: int) -> None:
        self.epoch_steps = 0
        self._epoch_start = time.perf_counter()
        self._epochs_done += 1
        if self.enabled and self.bar is None:
            name, top1 = _accuracy(record)
            acc = f" {name} {top1:.2f}%" if top1 is not None else ""
            eta = self.wall_s / self._epochs_done * (epochs - record["epoch"])
            print(
                f"epoch {record['epoch']}/{epochs} step {record['step']}"
                f" loss {record['train_loss']:.4f}{acc} {record['images_per_s']:,.0f} img/s"
                f" elapsed {record['wall_s']:.0f}s eta {eta:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        elif self.bar is not None and _accuracy(record)[1] is not None:
            name, top1 = _accuracy(record)
            self.bar.write(f"epoch {record['epoch']}: {name} {top1:.2f}%")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _accuracy(record: dict[str, Any]) -> tuple[str, float | None]:
    """An epoch's test accuracy and its name: a classifier's top1, or the kNN monitor's."""
    value = accuracy(record, "top1")
    name = "top1" if record.get("top1") is not None else "knn_top1"
    return name, None if value is None else float(value)

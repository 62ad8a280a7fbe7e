"""TensorBoard scalars per epoch (``log.tensorboard=true``): the numbers of metrics.jsonl.

Each epoch's record goes to ``<run>/tensorboard/`` as scalars under ``train/`` (loss, lr, images/s,
seconds, the step's own readouts such as the curriculum's alpha) and ``test/`` (top-1 and the class
groups), at the epoch as the step. A resumed run appends to the same folder. TensorBoard is an
optional dependency (``pip install tensorboard``): asking for it without it is a one-line error
before training starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longtail.errors import LongtailError
from longtail.eval.monitor import GROUP_KEYS, KNN_PREFIX

FOLDER = "tensorboard"
TEST_KEYS = (*GROUP_KEYS, *(KNN_PREFIX + k for k in GROUP_KEYS))


def require_tensorboard(enabled: bool) -> None:
    """A one-line error now (before a run folder exists) when TensorBoard is asked for and absent."""
    if not enabled:
        return
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise LongtailError(
            "log.tensorboard=true needs the tensorboard package: pip install tensorboard"
            " (or set log.tensorboard=false)"
        ) from None


class TensorBoardLog:
    """``log(record)`` per epoch; ``close()`` at the end. A no-op when ``enabled`` is false."""

    def __init__(self, run_path: Path, enabled: bool, first_epoch: int = 1) -> None:
        """``first_epoch``: the first epoch this process logs; events at it and after, left by
        an attempt that crashed past its last checkpoint, are purged (as metrics.jsonl is cut)."""
        self.writer: Any = None
        if not enabled:
            return
        require_tensorboard(enabled)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_path / FOLDER), purge_step=first_epoch)

    def log(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key in ("epoch", "step") or not isinstance(value, int | float) or value is None:
                continue
            group = "test" if key in TEST_KEYS else "train"
            self.writer.add_scalar(f"{group}/{key}", float(value), epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

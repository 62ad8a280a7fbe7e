"""Device, precision, threads, seeds and provenance: the run's environment."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from longtail.errors import LongtailError

if TYPE_CHECKING:
    from longtail.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LongtailError(
            f"train.device={name!r} is not a device: use auto, cpu or cuda"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LongtailError("train.device=cuda but no GPU is visible: use train.device=cpu")
    return device


# CPU flags of native bf16 arithmetic (AVX-512 BF16 on Zen 4 / Cooper Lake on, AMX on Sapphire Rapids)
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# "1" / "0" forces the answer of cpu_has_native_bf16 (the test suite pins it to "0": fp32 numerics)
BF16_ENV = "LONGTAIL_CPU_BF16"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags from ``/proc/cpuinfo``; empty where there is none."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes in bf16 natively, so bf16 autocast is faster than fp32.

    Without those instructions oneDNN emulates bf16: on a Zen 3 (AVX2 only) a CIFAR ResNet-32 epoch
    took over 4 minutes under bf16 autocast against 59 s in fp32. ``LONGTAIL_CPU_BF16=1|0`` overrides.
    """
    forced = os.environ.get(BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return bool(cpu_flags() & _BF16_FLAGS)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.precision``: ``auto`` is bf16 on a GPU and on a CPU with native
    bf16 (:func:`cpu_has_native_bf16`), fp32 (no autocast, ``None``) elsewhere."""
    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "auto" and (device.type == "cuda" or cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def resolve_precision(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    """``cfg`` with ``precision=auto`` replaced by what it means here (``bf16`` or ``fp32``).

    A run folder's config records the resolved value, so that a run resumed on another machine keeps
    the precision it started with (resume stays exact) and its results say how it was trained.
    """
    if cfg.precision != "auto":
        return cfg
    return replace(cfg, precision="fp32" if autocast_dtype(cfg, device) is None else "bf16")


def at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 for a loss (outputs of a bf16 autocast forward), or as it is when already
    wider (float64: the numeric checks that train in double precision)."""
    return t if t.dtype == torch.float64 else t.float()


def autocast(dtype: torch.dtype | None, device: torch.device) -> AbstractContextManager[Any]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def sigterm_as_interrupt(*more: str) -> Iterator[None]:
    """Inside, SIGTERM (how torchrun, SLURM and ``kill`` stop a job) raises KeyboardInterrupt in
    the main thread, so a run stops as Ctrl-C stops it: the last finished epoch kept, the folder
    marked ``interrupted``, the resume command printed. ``more``: names of further signals handled
    the same (``"SIGHUP"``: a closed terminal). Outside the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    with _handlers(interrupt, "SIGTERM", *more):
        yield


@contextmanager
def signals_ignored(*names: str) -> Iterator[None]:
    """Inside, the signals ``names`` are ignored (a second Ctrl-C cannot cut a clean-up short);
    their handlers are restored after. Outside the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _handlers(signal.SIG_IGN, *names):
        yield


@contextmanager
def _handlers(handler: Any, *names: str) -> Iterator[None]:
    """``handler`` for the signals ``names`` this platform has, the previous ones restored after."""
    numbers = [getattr(signal, name) for name in names if hasattr(signal, name)]
    previous = {number: signal.signal(number, handler) for number in numbers}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old if old is not None else signal.SIG_DFL)


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads; 0 keeps torch's setting (all cores, or OMP_NUM_THREADS)."""
    if threads > 0:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's (its legacy generator takes 32 bits) and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global generator's state, in types ``torch.load``'s safe default reads (tensors,
    tuples, numbers, strings: NumPy's key array travels as a tensor)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state["numpy"] = {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["name"], keys, saved["pos"], saved["has_gauss"], saved["gauss"]))
    else:  # a checkpoint written before the state was stored as a tensor: NumPy's own tuple
        np.random.set_state(saved)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def git_commit() -> str:
    """The repository's HEAD commit (with '+dirty' when the tree has changes), or 'unknown'."""
    repo = Path(__file__).resolve().parents[2]  # src/longtail/runtime.py -> the checkout
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far, MiB: allocated tensors on a GPU, resident set on a CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource  # POSIX only; ru_maxrss is KiB on Linux

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def provenance(device: torch.device) -> dict[str, str]:
    """Where and when a measurement was taken: device, torch, commit, UTC date (benchmarks' JSON)."""
    import datetime as dt

    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "commit": git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }

"""CUDA MPS for K runs on one GPU, and each run's peak GPU memory as nvidia-smi sees it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile

from longtail.queue.commands import Device

MPS_CONTROL = "nvidia-cuda-mps-control"


class Mps:
    """The MPS daemon, started for K > 1 runs on a GPU when the machine has it (else a no-op)."""

    def __init__(self, state: str, started: bool = False) -> None:
        self.state = state
        self.started = started

    @classmethod
    def start(cls, device: Device, jobs: int) -> Mps:
        if device.name != "cuda":
            return cls("off (CPU)")
        if jobs < 2:
            return cls("off (one job)")
        control = shutil.which(MPS_CONTROL)
        if control is None:
            return cls(f"off ({MPS_CONTROL} not found)")
        pipes = tempfile.mkdtemp(prefix="mps-")
        os.environ.setdefault("CUDA_MPS_PIPE_DIRECTORY", pipes)
        os.environ.setdefault("CUDA_MPS_LOG_DIRECTORY", pipes)
        try:
            subprocess.run([control, "-d"], check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as err:
            return cls(f"off (failed to start: {err})")
        return cls("on", started=True)

    def describe(self) -> str:
        return self.state

    def stop(self) -> None:
        if not self.started:
            return
        control = shutil.which(MPS_CONTROL)
        if control is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([control], input=b"quit\n", capture_output=True, timeout=30)
        self.started = False


class GpuMemory:
    """Peak used GPU memory per run, polled from ``nvidia-smi --query-compute-apps`` (MiB)."""

    def __init__(self, device: Device) -> None:
        self.enabled = device.name == "cuda" and shutil.which("nvidia-smi") is not None
        self._peak: dict[str, float] = {}

    def sample(self, key: str, pid: int) -> None:
        if not self.enabled:
            return
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) == 2 and parts[0] == str(pid) and parts[1].isdigit():
                self._peak[key] = max(self._peak.get(key, 0.0), float(parts[1]))

    def peak(self, key: str) -> float | None:
        return self._peak.get(key)

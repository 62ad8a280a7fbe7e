"""train.precision=auto: bf16 on a GPU and on a CPU with native bf16, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from longtail import runtime
from longtail.config import TrainConfig

CPU = torch.device("cpu")


@pytest.fixture
def capability(monkeypatch: pytest.MonkeyPatch):
    """Set what cpu_has_native_bf16 reports, through /proc/cpuinfo's flags (env pin lifted)."""
    monkeypatch.delenv(runtime.BF16_ENV, raising=False)

    def set_flags(flags: set[str]) -> None:
        runtime.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))

    yield set_flags
    runtime.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_is_bf16_on_a_cpu_with_native_bf16(capability, flag: str) -> None:
    capability({"avx2", "avx512f", flag})
    assert runtime.autocast_dtype(TrainConfig(precision="auto"), CPU) is torch.bfloat16


def test_auto_is_fp32_on_a_cpu_without_it(capability) -> None:
    capability({"avx2", "avx512f", "avx512bw"})  # AVX-512 alone emulates bf16: slower than fp32
    assert runtime.autocast_dtype(TrainConfig(precision="auto"), CPU) is None


def test_explicit_precision_wins_over_the_capability(capability) -> None:
    capability({"avx512_bf16"})
    assert runtime.autocast_dtype(TrainConfig(precision="fp32"), CPU) is None
    capability(set())
    assert runtime.autocast_dtype(TrainConfig(precision="bf16"), CPU) is torch.bfloat16


def test_auto_is_bf16_on_cuda_whatever_the_cpu(capability) -> None:
    capability(set())
    dtype = runtime.autocast_dtype(TrainConfig(precision="auto"), torch.device("cuda"))
    assert dtype is torch.bfloat16


def test_the_environment_pin_overrides_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    for value, expected in (("0", False), ("1", True)):
        monkeypatch.setenv(runtime.BF16_ENV, value)
        runtime.cpu_has_native_bf16.cache_clear()
        assert runtime.cpu_has_native_bf16() is expected
    runtime.cpu_has_native_bf16.cache_clear()


def test_the_suite_is_pinned_to_fp32() -> None:
    runtime.cpu_has_native_bf16.cache_clear()
    assert runtime.autocast_dtype(TrainConfig(precision="auto"), CPU) is None


def test_cpu_flags_reads_the_first_processor(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nflags\t: other\n")
    assert runtime.cpu_flags(info) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert runtime.cpu_flags(tmp_path / "missing") == frozenset()

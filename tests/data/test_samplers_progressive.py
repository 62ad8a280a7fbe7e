"""Progressively-balanced sampling (Kang et al. 2020, eq. 2) and the DRS/progress schedules."""

from __future__ import annotations

import pytest
import torch

from longtail.data.samplers import IndexSampler
from longtail.errors import LongtailError
from longtail.losses import drs_mode, progressive_fraction

# A long-tailed toy set: class 3 is absent, class 4 has a single image.
COUNTS = [400, 120, 40, 0, 1, 9]
N = sum(COUNTS)
PRESENT = sum(n > 0 for n in COUNTS)


def make_labels(seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(COUNTS)])
    return labels[torch.randperm(N, generator=torch.Generator().manual_seed(seed))]


def make_sampler(mode: str = "progressive", seed: int = 0, **kw: object) -> IndexSampler:
    kw.setdefault("batch_size", 64)
    return IndexSampler(
        make_labels(),
        num_classes=len(COUNTS),
        mode=mode,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed),
        **kw,  # type: ignore[arg-type]
    )


def pb_expected(t: float) -> list[float]:
    """p^PB_c(t) = (1 - t) n_c / N + t [n_c > 0] / K_present, from eq. 2 with q = 1 and q = 0."""
    return [(1 - t) * n / N + t * (1.0 if n > 0 else 0.0) / PRESENT for n in COUNTS]


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 1.0])
def test_class_probabilities_follow_eq_2(t: float) -> None:
    sampler = make_sampler()
    sampler.set_progress(t)
    probs = sampler.class_probabilities()
    assert probs is not None and probs.dtype == torch.float32
    assert probs.tolist() == pytest.approx(pb_expected(t), rel=1e-6, abs=1e-12)


def test_ends_are_instance_and_class_balanced_exactly() -> None:
    sampler = make_sampler()
    instance = torch.tensor([n / N for n in COUNTS], dtype=torch.float64).float()
    at_zero = sampler.class_probabilities()  # default t/T = 0
    assert at_zero is not None and torch.equal(at_zero, instance)
    sampler.set_progress(1.0)
    at_one = sampler.class_probabilities()
    balanced_probs = make_sampler("class_balanced").class_probabilities()
    assert at_one is not None and balanced_probs is not None
    assert torch.equal(at_one, balanced_probs)
    # at t/T = 1 the draws are the class-balanced mode's, index for index
    balanced = make_sampler("class_balanced", seed=4)
    progressive = make_sampler(seed=4)
    progressive.set_progress(1.0)
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(progressive, balanced, strict=True))


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_empirical_class_frequencies_within_4_sigma(t: float) -> None:
    sampler = make_sampler(seed=11, batch_size=500, samples_per_epoch=20_000)
    sampler.set_progress(t)
    labels = make_labels()
    drawn = torch.cat([torch.cat(list(sampler)) for _ in range(5)])  # 100,000 draws
    freq = torch.bincount(labels[drawn], minlength=len(COUNTS)).double()
    n = drawn.numel()
    p = torch.tensor(pb_expected(t), dtype=torch.float64)
    sigma = (n * p * (1 - p)).sqrt()
    assert ((freq - n * p).abs() <= 4 * sigma + 1e-9).all(), (freq, n * p)
    assert freq[3] == 0  # the absent class is never drawn


def test_set_progress_applies_from_next_epoch() -> None:
    reference = make_sampler(seed=2)
    first_ref = list(reference)
    reference.set_progress(0.7)
    second_ref = list(reference)

    sampler = make_sampler(seed=2)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(3)]
    sampler.set_progress(0.7)  # mid-epoch: this epoch keeps t/T = 0
    assert sampler.progress == 0.7
    first = head + list(iterator)
    assert all(torch.equal(a, b) for a, b in zip(first, first_ref, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(list(sampler), second_ref, strict=True))


@pytest.mark.parametrize("stop_after", [0, 3, 8])
def test_state_dict_resumes_exactly(stop_after: int) -> None:
    def run(sampler: IndexSampler) -> list[torch.Tensor]:
        sampler.set_progress(0.3)
        out = list(sampler)
        sampler.set_progress(0.6)
        return out + list(sampler)

    ref_stream = run(make_sampler(seed=3))  # two epochs of 8 batches, at t/T = 0.3 then 0.6

    sampler = make_sampler(seed=3)
    sampler.set_progress(0.3)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(stop_after)]
    if stop_after == 8:
        list(iterator)  # finish the epoch: the next one starts from the saved state
    if stop_after > 0:  # before the first draw, a new t/T would still apply to this epoch
        sampler.set_progress(0.6)  # set for the next epoch before the checkpoint is taken
    state = sampler.state_dict()
    assert state["epoch_progress"] == (0.6 if stop_after == 8 else 0.3)

    resumed = make_sampler(seed=99)  # a different seed and t/T: everything must come from state
    resumed.set_progress(0.9)
    resumed.load_state_dict(state)
    assert resumed.progress == state["progress"]
    rest = list(resumed)
    if len(head) + len(rest) == 8:
        resumed.set_progress(0.6)
        rest += list(resumed)
    stream = head + rest
    assert len(stream) == len(ref_stream)
    assert all(torch.equal(x, y) for x, y in zip(stream, ref_stream, strict=True))
    assert resumed.epoch == 2


def test_state_without_progress_keys_still_loads() -> None:
    sampler = make_sampler("sqrt", seed=5)
    state = sampler.state_dict()
    expected = list(sampler)
    del state["progress"], state["epoch_progress"]  # a checkpoint from before the mode existed
    resumed = make_sampler("sqrt", seed=6)
    resumed.load_state_dict(state)
    assert resumed.progress == 0.0
    assert all(torch.equal(a, b) for a, b in zip(list(resumed), expected, strict=True))


def test_progressive_with_default_length() -> None:
    sampler = make_sampler(batch_size=64, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-N // 64)
    assert sum(b.numel() for b in batches) == N  # N draws per epoch, with replacement


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_bad_progress_raises(bad: float) -> None:
    with pytest.raises(LongtailError, match="progress"):
        make_sampler().set_progress(bad)


def test_drs_mode_switches_exactly_at_start_epoch() -> None:
    assert [drs_mode(e, 160) for e in (0, 159)] == ["random", "random"]
    assert [drs_mode(e, 160) for e in (160, 161, 199)] == ["class_balanced"] * 3
    assert drs_mode(0, 0) == "class_balanced"
    sampler = make_sampler("random")
    sampler.set_mode(drs_mode(160, 160))
    assert sampler.mode == "class_balanced"
    with pytest.raises(LongtailError):
        drs_mode(5, -1)


def test_progressive_fraction() -> None:
    assert [progressive_fraction(e, 200) for e in (0, 50, 100, 200, 250)] == [
        0.0,
        0.25,
        0.5,
        1.0,
        1.0,
    ]
    with pytest.raises(LongtailError):
        progressive_fraction(3, 0)
    with pytest.raises(LongtailError):
        progressive_fraction(-1, 10)

"""IndexSampler and class_sampling_weights against the Decoupling eq. 1 and exact epoch counts."""

from __future__ import annotations

import pytest
import torch

from longtail.data.samplers import IndexSampler, class_sampling_weights
from longtail.errors import LongtailError

# A long-tailed toy set: class 3 is absent, class 4 has a single image.
COUNTS = [400, 120, 40, 0, 1, 9]
MODE_Q = {"random": 1.0, "class_balanced": 0.0, "sqrt": 0.5}


def make_labels(counts: list[int], seed: int = 0) -> torch.Tensor:
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def make_sampler(mode: str = "random", seed: int = 0, **kw: object) -> IndexSampler:
    labels = make_labels(COUNTS)
    kw.setdefault("batch_size", 64)
    return IndexSampler(
        labels,
        num_classes=len(COUNTS),
        mode=mode,  # type: ignore[arg-type]
        generator=torch.Generator().manual_seed(seed),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0, 2.0])
def test_weights_match_formula(q: float) -> None:
    got = class_sampling_weights(torch.tensor(COUNTS), q)
    powered = [n**q if n > 0 else 0.0 for n in COUNTS]
    expected = [v / sum(powered) for v in powered]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def test_weights_reject_bad_counts() -> None:
    with pytest.raises(LongtailError):
        class_sampling_weights(torch.tensor([0, 0]), 0.5)
    with pytest.raises(LongtailError):
        class_sampling_weights(torch.tensor([3, -1]), 1.0)


@pytest.mark.parametrize("mode", ["random", "class_balanced", "sqrt"])
def test_empirical_class_frequencies_within_4_sigma(mode: str) -> None:
    sampler = make_sampler(mode, seed=1, batch_size=100)
    labels = make_labels(COUNTS)
    drawn = torch.cat([torch.cat(list(sampler)) for _ in range(40)])  # 40 epochs of 570 draws
    freq = torch.bincount(labels[drawn], minlength=len(COUNTS)).double()
    n = drawn.numel()
    p = class_sampling_weights(torch.tensor(COUNTS), MODE_Q[mode])
    sigma = (n * p * (1 - p)).sqrt()
    assert ((freq - n * p).abs() <= 4 * sigma + 1e-9).all(), (freq, n * p)
    assert freq[3] == 0  # the absent class is never drawn, in any mode


def test_within_class_draws_are_uniform() -> None:
    labels = torch.tensor([0] * 3 + [1] * 500)
    sampler = IndexSampler(
        labels, 2, 50, "class_balanced", generator=torch.Generator().manual_seed(0)
    )
    drawn = torch.cat([torch.cat(list(sampler)) for _ in range(30)])
    small = drawn[labels[drawn] == 0]
    per_instance = torch.bincount(small, minlength=3).double()
    n, p = small.numel(), 1 / 3
    assert ((per_instance - n * p).abs() <= 4 * (n * p * (1 - p)) ** 0.5).all()


def test_random_epoch_visits_every_index_once() -> None:
    sampler = make_sampler("random", batch_size=64, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-570 // 64)
    assert [b.numel() for b in batches[:-1]] == [64] * (len(batches) - 1)
    assert batches[-1].numel() == 570 % 64
    assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(570))
    assert all(b.dtype == torch.int64 for b in batches)
    second = torch.cat(list(sampler))
    assert not torch.equal(second, torch.cat(batches))  # a fresh permutation each epoch


def test_drop_last_and_samples_per_epoch_set_length() -> None:
    assert len(make_sampler("random", batch_size=64)) == 570 // 64
    sampler = make_sampler("class_balanced", batch_size=64, samples_per_epoch=1000)
    assert len(sampler) == 1000 // 64
    assert sum(b.numel() for b in sampler) == (1000 // 64) * 64


def test_same_seed_same_batches_and_other_seed_differs() -> None:
    for mode in ("random", "sqrt"):
        a = list(make_sampler(mode, seed=7))
        b = list(make_sampler(mode, seed=7))
        c = list(make_sampler(mode, seed=8))
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("mode", ["random", "class_balanced"])
@pytest.mark.parametrize("stop_after", [0, 3, 8])
def test_state_dict_resumes_exactly(mode: str, stop_after: int) -> None:
    reference = make_sampler(mode, seed=3)
    ref_stream = list(reference) + list(reference)  # two epochs of 8 batches

    sampler = make_sampler(mode, seed=3)
    iterator = iter(sampler)
    head = [next(iterator) for _ in range(stop_after)]
    state = sampler.state_dict()
    if stop_after == 0:  # an epoch not yet started resumes as a fresh one
        assert state["position"] == 0

    resumed = make_sampler(mode, seed=99)  # a different seed: everything must come from state
    resumed.load_state_dict(state)
    rest = list(resumed)
    if len(head) + len(rest) == len(reference):
        rest += list(resumed)
    stream = head + rest
    assert len(stream) == len(ref_stream)
    assert all(torch.equal(x, y) for x, y in zip(stream, ref_stream, strict=True))
    assert resumed.epoch == 2


def test_state_dict_between_epochs() -> None:
    reference = make_sampler("sqrt", seed=5)
    list(reference)
    state = reference.state_dict()
    expected = list(reference)
    resumed = make_sampler("sqrt", seed=6)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(list(resumed), expected, strict=True))


def test_set_mode_applies_from_next_epoch() -> None:
    sampler = make_sampler("random", batch_size=570)
    iterator = iter(sampler)
    first = next(iterator)
    sampler.set_mode("class_balanced")
    assert sampler.mode == "class_balanced"
    assert torch.equal(torch.sort(first).values, torch.arange(570))  # the epoch stayed random
    list(iterator)
    labels = make_labels(COUNTS)
    balanced = torch.cat([torch.cat(list(sampler)) for _ in range(5)])
    share_of_head = (labels[balanced] == 0).double().mean().item()
    assert abs(share_of_head - 0.2) < 0.05  # 5 present classes: 1/5 each, far from 400/570


def test_bad_mode_and_arguments_raise() -> None:
    with pytest.raises(LongtailError, match="sampler mode"):
        make_sampler("balanced")
    sampler = make_sampler()
    with pytest.raises(LongtailError, match="sampler mode"):
        sampler.set_mode("oversample")  # type: ignore[arg-type]
    with pytest.raises(LongtailError):
        make_sampler(batch_size=0)
    with pytest.raises(LongtailError):
        IndexSampler(torch.tensor([0, 5]), num_classes=3, batch_size=2)
    with pytest.raises(LongtailError):
        IndexSampler(torch.tensor([0.0, 1.0]), num_classes=2, batch_size=2)


def test_default_generator_follows_global_seed() -> None:
    labels = make_labels(COUNTS)
    torch.manual_seed(11)
    a = list(IndexSampler(labels, len(COUNTS), 64))
    torch.manual_seed(11)
    b = list(IndexSampler(labels, len(COUNTS), 64))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_max_batches_ends_the_epoch_and_next_epoch_is_fresh() -> None:
    labels = torch.arange(40) % 4
    cut = IndexSampler(labels, 4, 8, generator=torch.Generator().manual_seed(3), max_batches=2)
    full = IndexSampler(labels, 4, 8, generator=torch.Generator().manual_seed(3))
    assert len(cut) == 2 and len(full) == 5
    first_cut, first_full = list(cut), list(full)
    assert all(torch.equal(a, b) for a, b in zip(first_cut, first_full[:2], strict=True))
    # the next epoch is a new permutation drawn from the same generator position as the full run's
    second_cut, second_full = list(cut), list(full)
    assert all(torch.equal(a, b) for a, b in zip(second_cut, second_full[:2], strict=True))
    assert cut.epoch == 2


def test_mode_set_after_loading_at_an_epoch_boundary_applies_to_the_next_epoch() -> None:
    labels = torch.cat([torch.zeros(90, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    straight = IndexSampler(labels, 2, 10, generator=torch.Generator().manual_seed(5))
    list(straight)  # epoch 1, random
    saved = straight.state_dict()
    straight.set_mode("class_balanced")
    expected = list(straight)
    resumed = IndexSampler(labels, 2, 10, generator=torch.Generator().manual_seed(99))
    resumed.load_state_dict(saved)
    resumed.set_mode("class_balanced")  # DRS switching at the resumed epoch
    got = list(resumed)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))

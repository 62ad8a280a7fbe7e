"""The run's one seed sequence: every purpose's seed a SeedSequence child of train.seed."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from longtail.data.seeds import PURPOSES, derive, purpose_seed
from longtail.errors import LongtailError


def test_purpose_seeds_are_distinct_and_stable() -> None:
    seeds = {p: purpose_seed(0, p) for p in PURPOSES}
    assert len(set(seeds.values())) == len(PURPOSES)
    assert seeds == {p: purpose_seed(0, p) for p in PURPOSES}  # no hidden state
    # a SeedSequence child keyed by the purpose's CRC-32: written out once
    state = np.random.SeedSequence(0, spawn_key=(zlib.crc32(b"view1"),)).generate_state(
        2, np.uint32
    )
    assert seeds["view1"] == (int(state[0]) << 31) ^ int(state[1])


def test_neighbouring_train_seeds_share_no_stream() -> None:
    """The old offsets made seed 1's 'sampler' stream seed 0's 'view1' stream; children do not."""
    by_seed = [{purpose_seed(s, p) for p in PURPOSES} for s in range(20)]
    together = set().union(*by_seed)
    assert len(together) == 20 * len(PURPOSES)


def test_seeds_fit_every_generator() -> None:
    for s in (0, 1, 2**32 - 1):
        for p in PURPOSES:
            value = purpose_seed(s, p)
            assert 0 <= value < 2**63
            torch.Generator().manual_seed(value)


def test_derive_mixes_numbers_and_names() -> None:
    assert derive(3, 1, 2) != derive(3, 2, 1)
    assert derive(3, "order") != derive(4, "order")
    assert derive(3) != derive(3, 0)


def test_unknown_purpose_is_one_line() -> None:
    with pytest.raises(LongtailError, match="no seed purpose 'veiw1'.*PURPOSES"):
        purpose_seed(0, "veiw1")

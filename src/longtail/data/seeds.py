"""One seed sequence per run: every random stream derives from ``train.seed`` and its purpose.

The global generators (the model's initial weights) take ``train.seed`` itself, the root of the
sequence; a generator a method or a loader draws from (a sampler, a view's augmentation, a
k-positive draw) asks :func:`purpose_seed` for its purpose's seed; the seed is a child
of NumPy's ``SeedSequence(train.seed)`` keyed by the purpose's name, so no module picks an offset
of its own, two purposes never share (or overlap) a stream, and adding a purpose moves no other.
The long-tailed subset is not drawn here: it has its own ``data.subset_seed`` (it must not change
when the training seed does).
"""

from __future__ import annotations

import zlib

import numpy as np

from longtail.errors import LongtailError

PURPOSES: dict[str, str] = {
    "sampler": "the training batches' sampler (the contrastive stream's, for hybrid)",
    "view1": "the first augmented view",
    "view2": "the second augmented view",
    "ce_sampler": "hybrid: the class-balanced CE stream's sampler",
    "ce_view": "the classification view (hybrid's CE stream, BCL's RandAugment view)",
    "queue_draw": "KCL: the k positives drawn from the queue",
    "positives": "hybrid SC: the positives drawn from the batch",
}


def derive(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that depends on ``seed`` and ``keys`` alone (NumPy ``SeedSequence`` child).

    ``keys`` are whole numbers >= 0 or names (a name stands for its CRC-32, stable across Python
    runs, unlike ``hash``). 63 bits: a valid seed for ``torch.Generator`` on every device.
    """
    spawn_key = tuple(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys)
    state = np.random.SeedSequence(int(seed), spawn_key=spawn_key).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def purpose_seed(seed: int, purpose: str) -> int:
    """The seed of ``purpose``'s generator in a run of ``train.seed=seed``."""
    if purpose not in PURPOSES:
        raise LongtailError(
            f"no seed purpose {purpose!r}: add it to longtail.data.seeds.PURPOSES"
            f" (known: {', '.join(PURPOSES)})"
        )
    return derive(seed, purpose)

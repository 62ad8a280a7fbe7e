"""The seeds of a run's random streams, all from ``train.seed``: one table, named by purpose.

Each generator a method or the loaders draw from (a sampler, a view's augmentation, a k-positive
draw) asks for its purpose's seed here, so no module picks an offset of its own and two
purposes never share a stream.
"""

from __future__ import annotations

from longtail.errors import LongtailError

# purpose -> offset from train.seed (the values the runs before the registry used, kept so that
# their draws, and the demo's figures, stay as they were)
OFFSETS: dict[str, int] = {
    "sampler": 0,  # the training batches' sampler (the contrastive stream's, for hybrid)
    "view1": 1,  # the first augmented view
    "view2": 2,
    "ce_sampler": 10,  # hybrid: the class-balanced CE stream
    "ce_view": 11,
    "queue_draw": 20,  # KCL: the k positives drawn from the queue
    "positives": 30,  # hybrid SC: the positives drawn from the batch
}


def purpose_seed(seed: int, purpose: str) -> int:
    """The seed of ``purpose``'s generator in a run of ``train.seed=seed``."""
    if purpose not in OFFSETS:
        raise LongtailError(
            f"no seed purpose {purpose!r}: add it to longtail.data.seeds.OFFSETS"
            f" (known: {', '.join(OFFSETS)})"
        )
    return seed + OFFSETS[purpose]

"""The labelled MoCo queue against a plain Python FIFO (a deque with maxlen)."""

from __future__ import annotations

from collections import deque

import pytest
import torch
import torch.nn.functional as F

from longtail.errors import LongtailError
from longtail.losses.queue import LabelledQueue


def _as_rows(keys: torch.Tensor, labels: torch.Tensor) -> list[tuple[int, tuple[float, ...]]]:
    """(label, key) pairs, sorted: the queue's set of entries independent of slot order."""
    pairs = zip(labels.tolist(), keys.tolist(), strict=True)
    return sorted((label, tuple(round(v, 6) for v in key)) for label, key in pairs)


@pytest.mark.parametrize(("size", "batches"), [(8, [4, 4, 4]), (10, [3, 3, 3, 3, 3]), (5, [7, 2])])
def test_matches_a_fifo_with_wrap_around(size: int, batches: list[int]) -> None:
    """Batch sizes that do not divide the queue, and a batch longer than the queue."""
    gen = torch.Generator().manual_seed(0)
    queue = LabelledQueue(dim=3, size=size)
    reference: deque[tuple[int, tuple[float, ...]]] = deque(maxlen=size)
    next_label = 0
    for batch in batches:
        keys = torch.randn(batch, 3, generator=gen)
        labels = torch.arange(next_label, next_label + batch)  # unique: the label names the key
        next_label += batch
        queue.enqueue(keys, labels)
        normed = F.normalize(keys, dim=1)
        reference.extend(
            (label, tuple(round(v, 6) for v in key))
            for label, key in zip(labels.tolist(), normed.tolist(), strict=True)
        )
        got_keys, got_labels = queue.contents()
        assert _as_rows(got_keys, got_labels) == sorted(reference)
        assert len(queue) == len(reference)
        assert queue.is_full == (len(reference) == size)


def test_slot_positions_follow_the_pointer() -> None:
    queue = LabelledQueue(dim=2, size=5)
    queue.enqueue(torch.ones(3, 2), torch.tensor([0, 1, 2]))
    assert queue.labels.tolist() == [0, 1, 2, -1, -1] and int(queue.ptr) == 3
    queue.enqueue(torch.ones(4, 2), torch.tensor([3, 4, 5, 6]))
    # slots 3, 4 then wrap to 0, 1: the two oldest (0, 1) are overwritten, 2 survives
    assert queue.labels.tolist() == [5, 6, 2, 3, 4] and int(queue.ptr) == 2
    assert queue.is_full


def test_partial_queue_returns_only_filled_slots_with_aligned_labels() -> None:
    queue = LabelledQueue(dim=4, size=16)
    keys = torch.tensor([[3.0, 0, 0, 4], [0, 2, 0, 0], [0, 0, -5, 0]])
    queue.enqueue(keys, torch.tensor([7, 0, 3]))
    got_keys, got_labels = queue.contents()
    assert got_labels.tolist() == [7, 0, 3]
    expected = torch.tensor([[0.6, 0, 0, 0.8], [0, 1, 0, 0], [0, 0, -1, 0]])
    torch.testing.assert_close(got_keys, expected)
    assert not queue.is_full and len(queue) == 3
    empty_keys, empty_labels = LabelledQueue(dim=4, size=16).contents()
    assert empty_keys.shape == (0, 4) and empty_labels.shape == (0,)


def test_contents_are_copies_and_enqueue_keeps_no_graph() -> None:
    queue = LabelledQueue(dim=2, size=4)
    queue.enqueue(torch.randn(4, 2), torch.arange(4))
    keys, labels = queue.contents()
    before = keys.clone()
    source = torch.randn(4, 2, requires_grad=True)
    queue.enqueue(source * 2, torch.arange(4, 8))
    torch.testing.assert_close(keys, before)  # the earlier snapshot did not change
    assert labels.tolist() == [0, 1, 2, 3]
    assert not queue.keys.requires_grad and queue.keys.grad_fn is None


def test_state_dict_round_trip() -> None:
    queue = LabelledQueue(dim=3, size=6)
    queue.enqueue(torch.randn(4, 3), torch.tensor([1, 1, 2, 0]))
    queue.enqueue(torch.randn(4, 3), torch.tensor([5, 4, 3, 2]))
    restored = LabelledQueue(dim=3, size=6)
    restored.load_state_dict(queue.state_dict())
    assert set(queue.state_dict()) == {"keys", "labels", "ptr"}
    for a, b in zip(queue.contents(), restored.contents(), strict=True):
        assert torch.equal(a, b)
    assert int(restored.ptr) == int(queue.ptr) == 2
    new_keys = torch.randn(3, 3)
    queue.enqueue(new_keys, torch.tensor([9, 9, 9]))
    restored.enqueue(new_keys, torch.tensor([9, 9, 9]))
    assert torch.equal(queue.labels, restored.labels) and torch.equal(queue.keys, restored.keys)


def test_float64_queue_keeps_its_dtype() -> None:
    queue = LabelledQueue(dim=2, size=3).to(torch.float64)
    queue.enqueue(torch.tensor([[1.0, 1.0]], dtype=torch.float32), torch.tensor([0]))
    assert queue.contents()[0].dtype == torch.float64 and queue.labels.dtype == torch.long


@pytest.mark.parametrize(
    ("keys", "labels", "message"),
    [
        (torch.zeros(2, 5), torch.tensor([0, 1]), "must be \\[B, 3\\]"),
        (torch.zeros(2, 3), torch.tensor([0]), "one label per key"),
        (torch.zeros(2, 3), torch.tensor([0, -1]), ">= 0"),
    ],
)
def test_bad_input_raises_one_line(keys: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(LongtailError, match=message) as info:
        LabelledQueue(dim=3, size=4).enqueue(keys, labels)
    assert "\n" not in str(info.value)


def test_bad_size_raises() -> None:
    with pytest.raises(LongtailError, match="size"):
        LabelledQueue(dim=3, size=0)

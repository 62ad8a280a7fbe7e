"""The one stepper: autocast around the forward only, layout, plain and SAM steps, DDP's no_sync."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from longtail.config import SamConfig
from longtail.optim.sam import sam_step
from longtail.optim.stepper import Stepper, channels_last

CPU = torch.device("cpu")


class Probe(nn.Module):
    """A linear method that records, per pass, what the stepper gave it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(2, 3, 1)
        self.seen: list[dict[str, Any]] = []

    def forward(self, batch: Any) -> Tensor:
        x, _ = batch
        self.seen.append({"autocast": torch.is_autocast_enabled("cpu"),
                          "channels_last": x.is_contiguous(memory_format=torch.channels_last)})  # fmt: skip
        return self.conv(x).mean(dim=(2, 3))

    def loss(self, out: Tensor, batch: Any, reweighted: bool = False) -> Tensor:
        self.seen[-1].update(loss_autocast=torch.is_autocast_enabled("cpu"), reweighted=reweighted,
                             out_dtype=out.dtype)  # fmt: skip
        weight = 2.0 if reweighted else 1.0
        return weight * (out.float() - batch[1]).pow(2).mean()


def _batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 3, generator=g)


def test_autocast_covers_the_forward_only_and_layout_is_channels_last() -> None:
    method = Probe()
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    Stepper(method, opt, CPU, torch.bfloat16, channels_last=True)(_batch(), lr=0.1)
    (seen,) = method.seen
    assert seen["autocast"] and not seen["loss_autocast"] and seen["channels_last"]
    assert seen["out_dtype"] == torch.bfloat16 and seen["reweighted"] is False


def test_a_plain_step_is_sgd_on_the_loss_and_sets_the_lr() -> None:
    method, ref = Probe(), Probe()
    opt = torch.optim.SGD(method.parameters(), lr=99.0)
    batch = _batch()
    loss = Stepper(method, opt, CPU, None, channels_last=False)(batch, lr=0.1)
    expected = ref.loss(ref(batch), batch)
    expected.backward()
    with torch.no_grad():
        for p, q in zip(method.parameters(), ref.parameters(), strict=True):
            assert torch.allclose(p, q - 0.1 * q.grad)
    assert loss.item() == pytest.approx(expected.item()) and not loss.requires_grad
    assert opt.param_groups[0]["lr"] == 0.1


def test_sam_reweights_the_first_pass_only_and_equals_sam_step() -> None:
    method, ref = Probe(), Probe()
    sam = SamConfig(rho=0.05)
    batch = _batch()
    stepper = Stepper(
        method, torch.optim.SGD(method.parameters(), lr=0.1), CPU, None, False, sam=sam
    )
    loss = stepper(batch, lr=0.1)
    assert [s["reweighted"] for s in method.seen] == [True, False]
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    expected = sam_step(opt, lambda: ref.loss(ref(batch), batch, True),
                        lambda: ref.loss(ref(batch), batch, False), rho=0.05)  # fmt: skip
    assert loss.item() == pytest.approx(expected.item())
    for p, q in zip(method.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


class Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: records whether a forward ran inside no_sync."""

    def __init__(self, method: Probe) -> None:
        super().__init__()
        self.module, self.quiet, self.log = method, False, []

    def forward(self, batch: Any) -> Tensor:
        self.log.append(self.quiet)
        return self.module(batch)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False


@pytest.mark.parametrize(
    ("sync_first", "expected"), [(True, [False, False]), (False, [True, False])]
)
def test_sams_first_pass_synchronises_unless_asked_not_to(
    sync_first: bool, expected: list[bool]
) -> None:
    method = Probe()
    wrapped = Wrapped(method)
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    Stepper(method, opt, CPU, None, False, sam=SamConfig(rho=0.05), forward_module=wrapped,
            sam_sync_first=sync_first)(_batch(), lr=0.1)  # fmt: skip
    assert wrapped.log == expected


def test_channels_last_touches_only_4d_floating_tensors() -> None:
    image, labels, mask = torch.randn(2, 3, 4, 5), torch.arange(2), torch.zeros(2, 3, 4, 5).bool()
    views, y, m = channels_last(([image, image], labels, mask))
    assert all(v.is_contiguous(memory_format=torch.channels_last) for v in views)
    assert isinstance(views, list) and torch.equal(views[0], image)
    assert y is labels and m is mask


def test_hooks_default_to_nothing_for_a_method_without_them() -> None:
    stepper = Stepper(Probe(), torch.optim.SGD(Probe().parameters(), lr=0.1), CPU, None, False)
    stepper.set_epoch(0, 1)
    assert stepper.epoch_record() == {} and stepper.state_dict() is None

"""The MoCo momentum encoder against the EMA written as a loop over parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.models.momentum import MomentumEncoder


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _train_step(online: nn.Module, gen: torch.Generator) -> None:
    """One SGD step on random data (changes the parameters and the BN running statistics)."""
    optimiser = torch.optim.SGD(online.parameters(), lr=0.5)
    loss = online(torch.randn(8, 4, generator=gen, dtype=torch.float64)).pow(2).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()


@pytest.mark.parametrize("momentum", [0.0, 0.9, 0.999, 1.0])
def test_parameters_follow_the_ema_loop(momentum: float) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    online = _net().double()
    key = MomentumEncoder(online, momentum=momentum)
    expected = {name: p.detach().clone() for name, p in online.named_parameters()}
    for _ in range(3):
        _train_step(online, gen)
        key.update(online)
        for name, p in online.named_parameters():
            expected[name] = momentum * expected[name] + (1 - momentum) * p.detach()
    for name, p in key.encoder.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-14, atol=1e-15)
        assert not p.requires_grad


def test_default_buffers_are_the_key_encoders_own() -> None:
    """MoCo's choice: only the key encoder's own (train-mode) forward changes its BN stats."""
    gen = torch.Generator().manual_seed(2)
    online = _net().double()
    key = MomentumEncoder(online, momentum=0.5)
    initial_mean = key.encoder[1].running_mean.clone()
    _train_step(online, gen)
    key.update(online)
    assert torch.equal(key.encoder[1].running_mean, initial_mean)
    assert not torch.equal(online[1].running_mean, initial_mean)
    batch = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    key.train()
    hidden = key.encoder[0](batch)
    key(batch)
    expected = 0.9 * initial_mean + 0.1 * hidden.mean(0)  # BN's momentum 0.1 update
    torch.testing.assert_close(key.encoder[1].running_mean, expected)


def test_copy_policy_copies_online_buffers() -> None:
    gen = torch.Generator().manual_seed(3)
    online = _net().double()
    key = MomentumEncoder(online, momentum=0.99, buffers="copy")
    _train_step(online, gen)
    _train_step(online, gen)
    key.update(online)
    for (name, b_key), (_, b_online) in zip(
        key.encoder.named_buffers(), online.named_buffers(), strict=True
    ):
        assert torch.equal(b_key, b_online), name
    assert int(key.encoder[1].num_batches_tracked) == 2


def test_is_a_frozen_independent_copy() -> None:
    online = _net()
    key = MomentumEncoder(online)
    assert all(a is not b for a, b in zip(key.parameters(), online.parameters(), strict=True))
    out = key(torch.randn(5, 4))
    assert out.shape == (5, 3) and not out.requires_grad and out.grad_fn is None
    with torch.no_grad():
        online[0].weight.add_(1.0)
    assert not torch.equal(key.encoder[0].weight, online[0].weight)


def test_momentum_override_and_state_dict() -> None:
    online = _net()
    key = MomentumEncoder(online, momentum=0.999)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    key.update(online, momentum=0.0)  # m = 0 copies the online weights
    for a, b in zip(key.encoder.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    restored = MomentumEncoder(_net())
    restored.load_state_dict(key.state_dict())
    for a, b in zip(restored.parameters(), key.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_arguments_raise() -> None:
    with pytest.raises(LongtailError, match="momentum"):
        MomentumEncoder(_net(), momentum=1.5)
    with pytest.raises(LongtailError, match="buffers"):
        MomentumEncoder(_net(), buffers="ema")  # type: ignore[arg-type]
    key = MomentumEncoder(_net())
    with pytest.raises(LongtailError, match="differ"):
        key.update(nn.Linear(4, 3))

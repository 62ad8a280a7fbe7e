"""Distributed helpers: one-process fallbacks, and 2 gloo processes against one full-batch process.

The 2-process tests spawn once per module (a module fixture) and compare, in float64 within
1e-10, the loss value and the gradients of SupCon and InfoNCE computed by
``distributed_contrastive`` on half batches with the same loss on the whole batch in one process.
Results come back as pickled plain Python / NumPy (a tensor put on an mp queue by a child that
exits gives FileNotFoundError in the parent).
"""

from __future__ import annotations

import copy
import gc
import os
import pickle
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from longtail.dist import (
    anchors_with_positive,
    distributed_contrastive,
    gather_no_grad,
    gather_with_grad,
    global_mean,
    is_distributed,
    is_main,
    rank,
    self_offset,
    world_size,
)
from longtail.errors import LongtailError
from longtail.losses import InfoNCELoss, SupConLoss
from longtail.losses.queue import LabelledQueue
from longtail.models.sync_bn import convert_sync_batchnorm

WORLD = 2
# single views; rank 0 gets [0, 0, 1, 2, 3, 4] (3 anchors with a positive: 0, 0, and 1 whose
# partner is on rank 1), rank 1 gets [1, 5, 5, 5, 6, 6] (all 6): unequal valid counts
SUPCON_LABELS = [0, 0, 1, 2, 3, 4, 1, 5, 5, 5, 6, 6]
# two views of six images, view 1 on rank 0 and view 2 on rank 1: every positive is remote
INFONCE_IDS = [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
ALL_SINGLETONS = list(range(12))

dist_test = [pytest.mark.dist, pytest.mark.xdist_group("dist"), pytest.mark.timeout(60)]


def _mark_dist(test: Callable[..., None]) -> Callable[..., None]:
    for mark in dist_test:
        test = mark(test)
    return test


def _inputs() -> Tensor:
    return torch.randn(12, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _layer() -> nn.Linear:
    """The same float64 Linear(5, 4) in every process."""
    gen = torch.Generator().manual_seed(2)
    layer = nn.Linear(5, 4).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(4, 5, generator=gen, dtype=torch.float64))
        layer.bias.copy_(torch.randn(4, generator=gen, dtype=torch.float64))
    return layer


def _contrastive_case(
    loss_fn: nn.Module, labels: list[int], *, naive: bool = False, ddp: bool = False
) -> dict[str, Any]:
    """Loss and gradients on this rank's half; parameter gradients averaged over ranks (DDP's rule)."""
    layer = _layer()
    model: nn.Module = DistributedDataParallel(layer) if ddp else layer
    n = 12 // world_size()
    rows = slice(rank() * n, (rank() + 1) * n)
    local_labels = torch.tensor(labels)[rows]
    features = model(_inputs()[rows])
    features.retain_grad()
    if naive:  # the plain local mean: what the helper's scaling exists to correct
        loss = loss_fn(
            features,
            local_labels,
            ref_features=gather_with_grad(features),
            ref_labels=gather_no_grad(local_labels),
            self_offset=self_offset(n),
        )
    else:
        loss = distributed_contrastive(loss_fn, features, local_labels)
    loss.backward()
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None for g in grads)
    if not ddp:
        for grad in grads:
            torch_dist.all_reduce(grad)
            grad /= world_size()
    return {
        "loss": loss.item(),
        "feature_grad": features.grad.numpy().copy(),
        "param_grads": [g.numpy().copy() for g in grads],
    }


# DRW-style class weights; rank 0's half has far more weight than rank 1's
CLASS_WEIGHT = [0.2, 1.0, 3.0, 0.5]
WEIGHTED_LABELS = [2, 2, 2, 1, 2, 3, 0, 0, 1, 0, 3, 0]


def _weighted_ce_case() -> dict[str, Any]:
    """F.cross_entropy's weighted mean on this rank's half through global_mean (DDP's average)."""
    layer = DistributedDataParallel(_layer())
    n = 12 // world_size()
    rows = slice(rank() * n, (rank() + 1) * n)
    labels = torch.tensor(WEIGHTED_LABELS)[rows]
    weight = torch.tensor(CLASS_WEIGHT, dtype=torch.float64)
    local = nn.functional.cross_entropy(layer(_inputs()[rows]), labels, weight=weight)
    loss = global_mean(local, weight[labels].sum())
    loss.backward()
    return {"loss": loss.item(), "param_grads": [p.grad.numpy().copy() for p in layer.parameters()]}


def _gather_case() -> dict[str, Any]:
    x = (torch.arange(6.0).reshape(3, 2) + 10 * rank()).requires_grad_()
    gathered = gather_with_grad(x)
    weights = (rank() + 1) * torch.arange(12.0).reshape(6, 2)  # a different loss on each rank
    (gathered * weights).sum().backward()
    errors = []
    for gather in (gather_no_grad, gather_with_grad):
        try:
            gather(torch.zeros(3 + rank(), 2))
        except LongtailError as error:
            errors.append(str(error))
    return {"gathered": gathered.detach().numpy(), "grad": x.grad.numpy(), "errors": errors}


def _queue_case() -> dict[str, Any]:
    gen = torch.Generator().manual_seed(10 + rank())  # different keys on each rank
    queue = LabelledQueue(dim=2, size=5)
    keys = torch.randn(3, 2, generator=gen)
    labels = torch.arange(3) + 3 * rank()
    queue.enqueue(gather_no_grad(keys), gather_no_grad(labels))
    stored_keys, stored_labels = queue.contents()
    return {"keys": stored_keys.numpy(), "labels": stored_labels.tolist()}


def _sync_bn_case() -> dict[str, Any]:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm1d(2))
    on_gpu = convert_sync_batchnorm(copy.deepcopy(model), "cuda")  # construct only
    on_cpu = convert_sync_batchnorm(model, "cpu")
    return {
        "cpu_types": [type(m).__name__ for m in on_cpu.modules()],
        "gpu_types": [type(m).__name__ for m in on_gpu.modules()],
    }


def _bn_net() -> nn.Module:
    """The same float64 conv -> BN -> ReLU -> pool -> linear -> BN1d in every process."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=0.3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4), nn.BatchNorm1d(4))  # fmt: skip
    return net.double()


def _bn_images() -> Tensor:
    return (
        3
        * torch.randn(12, 2, 5, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        + 1
    )


def _gathered_bn_case() -> dict[str, Any]:
    """Two steps of this rank's half through GatheredBatchNorm under DDP."""
    net = convert_sync_batchnorm(_bn_net(), "cpu")
    model = DistributedDataParallel(net)
    n = 12 // world_size()
    rows = slice(rank() * n, (rank() + 1) * n)
    out = model(_bn_images()[rows])
    (out * torch.arange(4.0, dtype=torch.float64)).pow(2).mean().backward()
    model(_bn_images()[rows] * 0.5)  # a second batch moves the running statistics again
    return {
        "out": out.detach().numpy().copy(),
        "param_grads": [p.grad.numpy().copy() for p in net.parameters()],
        "buffers": {k: b.numpy().copy() for k, b in net.state_dict().items() if "running" in k},
    }


def _worker(process: int, world: int, folder: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    torch.set_num_threads(1)
    torch_dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/rendezvous",
        rank=process,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        results = {
            "rank": rank(),
            "world_size": world_size(),
            "is_main": is_main(),
            "is_distributed": is_distributed(),
            "self_offset": self_offset(6),
            "supcon": _contrastive_case(SupConLoss(temperature=0.1), SUPCON_LABELS),
            "supcon_ddp": _contrastive_case(SupConLoss(temperature=0.1), SUPCON_LABELS, ddp=True),
            "supcon_naive": _contrastive_case(
                SupConLoss(temperature=0.1), SUPCON_LABELS, naive=True
            ),
            "infonce": _contrastive_case(InfoNCELoss(temperature=0.5), INFONCE_IDS),
            "none_valid": _contrastive_case(SupConLoss(), ALL_SINGLETONS),
            "weighted_ce": _weighted_ce_case(),
            "gather": _gather_case(),
            "queue": _queue_case(),
            "sync_bn": _sync_bn_case(),
            "gathered_bn": _gathered_bn_case(),
        }
    finally:
        # a DDP wrapper sits in a reference cycle and keeps gloo's worker threads alive; left to
        # the exit, a thread still dropping a work's tensors there aborts the process ("terminate
        # called without an active exception", 4 runs in 12; launch.end_together's docstring)
        gc.collect()
        torch_dist.destroy_process_group()
    with open(f"{folder}/rank{process}.pkl", "wb") as handle:
        pickle.dump(results, handle)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(WORLD, str(folder)), nprocs=WORLD, join=True)
    results = []
    for process in range(WORLD):
        with (Path(folder) / f"rank{process}.pkl").open("rb") as handle:
            results.append(pickle.load(handle))
    return results


def _full_batch(loss_fn: nn.Module, labels: list[int]) -> dict[str, Any]:
    """The reference: one process, the whole batch, no refs."""
    layer = _layer()
    features = layer(_inputs())
    features.retain_grad()
    loss = loss_fn(features, torch.tensor(labels))
    loss.backward()
    return {
        "loss": loss.item(),
        "feature_grad": features.grad.numpy(),
        "param_grads": [p.grad.numpy() for p in layer.parameters()],
    }


def _assert_matches_full_batch(ranks: list[dict[str, Any]], case: str, expected: dict) -> None:
    n = 12 // WORLD
    for process, result in enumerate(ranks):
        got = result[case]
        assert got["loss"] == pytest.approx(expected["loss"], abs=1e-10, rel=0)
        # the gather's backward sums W ranks' gradients into the owner's rows: W x full batch,
        # which DDP's 1/W parameter average cancels
        own_rows = expected["feature_grad"][process * n : (process + 1) * n]
        np.testing.assert_allclose(got["feature_grad"], WORLD * own_rows, rtol=0, atol=1e-10)
        for grad, grad_expected in zip(got["param_grads"], expected["param_grads"], strict=True):
            np.testing.assert_allclose(grad, grad_expected, rtol=0, atol=1e-10)


@_mark_dist
@pytest.mark.parametrize(
    ("case", "loss_fn", "labels"),
    [
        ("supcon", SupConLoss(temperature=0.1), SUPCON_LABELS),
        ("supcon_ddp", SupConLoss(temperature=0.1), SUPCON_LABELS),
        ("infonce", InfoNCELoss(temperature=0.5), INFONCE_IDS),
    ],
)
def test_two_ranks_equal_one_full_batch(
    ranks: list[dict[str, Any]], case: str, loss_fn: nn.Module, labels: list[int]
) -> None:
    _assert_matches_full_batch(ranks, case, _full_batch(loss_fn, labels))


@_mark_dist
def test_a_weighted_mean_over_ranks_equals_the_full_batch(ranks: list[dict[str, Any]]) -> None:
    """DRW's sum w_i l_i / sum w_i: global_mean makes two halves equal the whole batch."""
    layer = _layer()
    weight = torch.tensor(CLASS_WEIGHT, dtype=torch.float64)
    loss = nn.functional.cross_entropy(
        layer(_inputs()), torch.tensor(WEIGHTED_LABELS), weight=weight
    )
    loss.backward()
    for result in ranks:
        got = result["weighted_ce"]
        assert got["loss"] == pytest.approx(loss.item(), abs=1e-12, rel=0)
        for grad, p in zip(got["param_grads"], layer.parameters(), strict=True):
            np.testing.assert_allclose(grad, p.grad.numpy(), rtol=0, atol=1e-12)


@_mark_dist
def test_gathered_batchnorm_over_two_ranks_is_batchnorm_over_the_whole_batch(
    ranks: list[dict[str, Any]],
) -> None:
    """Outputs, parameter gradients (after DDP's average) and running statistics, in float64."""
    net = _bn_net()
    out = net(_bn_images())
    (out * torch.arange(4.0, dtype=torch.float64)).pow(2).mean().backward()
    net(_bn_images() * 0.5)
    for process, result in enumerate(ranks):
        got = result["gathered_bn"]
        np.testing.assert_allclose(got["out"], out.detach().numpy()[process * 6 : (process + 1) * 6],
                                   rtol=0, atol=1e-12)  # fmt: skip
        for grad, p in zip(got["param_grads"], net.parameters(), strict=True):
            np.testing.assert_allclose(grad, p.grad.numpy(), rtol=0, atol=1e-12)
        for key, value in net.state_dict().items():
            if "running" in key:
                np.testing.assert_allclose(got["buffers"][key], value.numpy(), rtol=0, atol=1e-12)


@_mark_dist
def test_plain_local_mean_is_wrong_with_unequal_valid_counts(ranks: list[dict[str, Any]]) -> None:
    """The SupCon batch really needs the helper's scaling (else the test above proves little)."""
    expected = _full_batch(SupConLoss(temperature=0.1), SUPCON_LABELS)
    naive_mean = np.mean([r["supcon_naive"]["loss"] for r in ranks])
    assert abs(naive_mean - expected["loss"]) > 1e-3
    weight_error = np.abs(ranks[0]["supcon_naive"]["param_grads"][0] - expected["param_grads"][0])
    assert weight_error.max() > 1e-3


@_mark_dist
def test_no_anchor_with_a_positive_gives_zero_and_zero_gradients(
    ranks: list[dict[str, Any]],
) -> None:
    for result in ranks:
        got = result["none_valid"]
        assert got["loss"] == 0.0
        assert np.all(got["feature_grad"] == 0) and all(np.all(g == 0) for g in got["param_grads"])


@_mark_dist
def test_rank_helpers_gather_queue_and_sync_bn(ranks: list[dict[str, Any]]) -> None:
    base = np.arange(6.0).reshape(3, 2)
    for process, result in enumerate(ranks):
        assert result["rank"] == process and result["world_size"] == WORLD
        assert result["is_main"] == (process == 0) and result["is_distributed"]
        assert result["self_offset"] == 6 * process
        gather = result["gather"]
        np.testing.assert_array_equal(gather["gathered"], np.concatenate([base, base + 10]))
        # rank r's loss weights every gathered row by (r + 1): the owner gets (1 + 2) x its rows
        expected_grad = 3 * np.arange(12.0).reshape(6, 2)[3 * process : 3 * process + 3]
        np.testing.assert_array_equal(gather["grad"], expected_grad)
        assert len(gather["errors"]) == 2
        assert all("[(3, 2), (4, 2)]" in e and "drop_last" in e for e in gather["errors"])
        assert result["queue"]["labels"] == [5, 1, 2, 3, 4]  # 6 keys into 5 slots: 0 overwritten
        assert result["sync_bn"]["cpu_types"].count("GatheredBatchNorm") == 2
        assert result["sync_bn"]["gpu_types"].count("SyncBatchNorm") == 2
    np.testing.assert_array_equal(ranks[0]["queue"]["keys"], ranks[1]["queue"]["keys"])


# ---- one process: every helper degrades to identity / 0 / 1 ----


def test_one_process_fallbacks() -> None:
    assert (rank(), world_size(), is_main(), is_distributed()) == (0, 1, True, False)
    assert self_offset(32) == 0
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x and gather_no_grad(x) is x


def test_one_process_distributed_contrastive_is_the_plain_loss() -> None:
    features = _layer()(_inputs())
    labels = torch.tensor(SUPCON_LABELS)
    loss_fn = SupConLoss(temperature=0.1)
    got = distributed_contrastive(loss_fn, features, labels)
    assert got.item() == pytest.approx(loss_fn(features, labels).item(), abs=1e-12)
    # the gathered form in one process (refs = the batch, offset 0) is the same loss
    same = loss_fn(features, labels, ref_features=features, ref_labels=labels, self_offset=0)
    assert got.item() == pytest.approx(same.item(), abs=1e-12)


@pytest.mark.parametrize("offset", [None, 0, 2])
def test_anchors_with_positive_matches_a_loop(offset: int | None) -> None:
    labels = torch.tensor([0, 1, 2, 2])
    ref_labels = torch.tensor([5, 1, 0, 1, 2, 2])
    got = anchors_with_positive(labels, ref_labels, offset).tolist()
    expected = [
        any(
            ref_labels[j] == labels[i] and (offset is None or j != offset + i)
            for j in range(len(ref_labels))
        )
        for i in range(len(labels))
    ]
    assert got == expected


def _bn_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm1d(4))


def test_sync_bn_is_a_no_op_without_a_process_group() -> None:
    model = _bn_model()
    for device in ("cpu", "cuda", torch.device("cuda", 0)):
        assert convert_sync_batchnorm(model, device) is model
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())


def test_sync_bn_converts_when_distributed_on_an_accelerator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import longtail.dist

    monkeypatch.setattr(longtail.dist, "is_distributed", lambda: True)
    model = _bn_model()
    with torch.no_grad():
        model[1].running_mean.fill_(0.25)
    assert convert_sync_batchnorm(model, "cpu") is model
    converted = convert_sync_batchnorm(model, "cuda")
    kinds = [type(m) for m in converted.modules()]
    assert kinds.count(nn.SyncBatchNorm) == 2 and nn.BatchNorm2d not in kinds
    assert torch.equal(converted[1].running_mean, torch.full((4,), 0.25))


@_mark_dist
def test_the_dist_group_holds_under_xdist(request: pytest.FixtureRequest) -> None:
    """The multi-process tests share one xdist worker (their module fixtures spawn ranks once, two
    ranks on two cores); a pytest that xdist's loadgroup cannot tag (pytest-xdist #1386) splits
    them silently across workers."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        pytest.skip("not under xdist: no groups to keep")
    assert request.node.nodeid.endswith("@dist"), "pin pytest below 9.2 (pyproject.toml)"

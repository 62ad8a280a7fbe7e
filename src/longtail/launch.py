"""Data-parallel launch under ``torchrun``: the process group and this rank's device.

``torchrun --nproc_per_node=N -m longtail train RECIPE`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` (multi-node: its own ``--nnodes``/``--rdzv-*`` flags). :func:`start` reads them,
joins the default process group (NCCL on CUDA, gloo on CPU) and gives each rank its device:
``cuda:LOCAL_RANK`` on a GPU machine, the CPU otherwise. Without those variables (a plain
``longtail train``) nothing is initialised and the run is one process.

``train.batch_size`` stays the *global* batch the papers state; each rank takes
``batch_size / W`` of every batch (:meth:`Shard.rows`), cut from the one seeded global batch that
a single process would draw (:class:`longtail.data.loader.DeviceLoader` with ``shard``).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from longtail.errors import LongtailError

TIMEOUT = dt.timedelta(minutes=10)  # a collective that waits longer means a rank died


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` ranks (``rank`` 0 of 1 in a plain run)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's rows of a global batch of ``n`` (``n`` divisible by ``world``)."""
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)


def requested() -> bool:
    """True under torchrun (or another launcher that sets WORLD_SIZE and MASTER_PORT), even for
    one process: ``torchrun --nproc_per_node=1`` trains through DDP too, so that its cost on one
    device can be measured (benchmarks/ddp_overhead.py)."""
    return "WORLD_SIZE" in os.environ and "MASTER_PORT" in os.environ


def start(device: torch.device) -> tuple[torch.device, Shard]:
    """Join the process group torchrun describes; return (this rank's device, its shard).

    ``device`` is the run's resolved ``train.device``: on CUDA each rank takes ``cuda:LOCAL_RANK``.
    A plain run (no launcher, no process group) returns ``(device, Shard())`` untouched; under a
    process group the caller made, its ranks are used. Idempotent in a process.
    """
    if dist.is_initialized():  # a group the caller made (the Python API): join its ranks
        world = dist.get_world_size()
    elif requested():
        world = int(os.environ["WORLD_SIZE"])
    else:
        return device, Shard()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise LongtailError(
                f"LOCAL_RANK={local} but {torch.cuda.device_count()} GPUs are visible: start at"
                " most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(
                backend, store=_store(world), rank=int(os.environ["RANK"]), world_size=world,
                timeout=TIMEOUT,
            )  # fmt: skip
        except (RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise LongtailError(
                f"cannot join the {backend} process group ({first}): launch with torchrun"
            ) from None
    if dist.get_world_size() != world:
        raise LongtailError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()}")
    return device, Shard(dist.get_rank(), world)


def _store(world: int) -> dist.Store:
    """The rendezvous store, its keys under this attempt's own prefix.

    torchrun's agent hosts one TCPStore for the whole job (``TORCHELASTIC_USE_AGENT_STORE``), and
    it outlives a restart: without a prefix per attempt, a restarted rank reads the addresses the
    killed attempt left there and gloo's connect is refused (measured under --max-restarts=1).
    Outside torchrun's agent, rank 0 hosts the store at MASTER_ADDR:MASTER_PORT.
    """
    rank = int(os.environ["RANK"])
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ["MASTER_PORT"]), world,
        is_master=rank == 0 and not agent, timeout=TIMEOUT,
    )  # fmt: skip
    return dist.PrefixStore(f"longtail/attempt-{restart_count()}", store)


def elastic_run_id() -> str | None:
    """torchrun's id of this job (the same across its restarts); None outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or None


def restart_count() -> int:
    """How many times torchrun has restarted this job's workers (0: the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def share(value: str, shard: Shard) -> str:
    """Rank 0's ``value`` on every rank (the run folder only rank 0 creates)."""
    if shard.world == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def mean_over_ranks(x: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The mean of ``x`` over the ranks (a loss readout: each rank's local mean -> the global)."""
    if shard.world == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / shard.world


END_WAIT = dt.timedelta(days=2)  # rank 0's last evaluation, probe and writes: no collective's limit
_ended = [0]  # runs this process has ended under its process group: the number in the store key


def end_together(shard: Shard, state: str | None) -> str | None:
    """Every rank, as its run ends: rank 0 says how (``state``), the others wait for its word.

    Rank 0's ``state`` ("complete", "failed", "interrupted") goes to the group's store; a rank > 0
    whose own part ended well (``state`` "complete") waits for it and returns it; any other
    ``state`` goes on at once (waiting could deadlock on a rank 0 still in a collective).
    The wait is the store's, the GIL released: a gloo worker thread still dropping the last
    collective's tensors takes the GIL then, instead of at interpreter shutdown, where that is an
    abort ("terminate called without an active exception"; gloo's threads outlive
    ``destroy_process_group`` in torch 2.13). So every rank's run returns once rank 0 wrote the
    folder, and a torchrun job ends on all ranks together. Returns ``state`` in a plain run.
    """
    if shard.world == 1 or not dist.is_initialized():
        return state
    _ended[0] += 1
    key = f"longtail/end-{_ended[0]}"
    store = dist.distributed_c10d._get_default_store()
    if shard.main:
        store.set(key, state or "failed")
        return state
    if state != "complete":
        return state
    store.wait([key], END_WAIT)
    return store.get(key).decode()


def stop() -> None:
    """Leave the process group (end of a torchrun run); nothing in a plain run."""
    if dist.is_initialized():
        dist.destroy_process_group()

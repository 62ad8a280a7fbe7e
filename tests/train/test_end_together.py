"""``launch.end_together``: how the ranks of a torchrun run end, with 2 gloo processes on CPU.

A rank > 0 whose part went well waits for rank 0's word (the folder written), with the GIL
released, so that gloo's worker threads finish dropping the last collective's tensors then and
not at interpreter shutdown (an abort, seen under ``--max-restarts``). A rank > 0 that failed
does not wait, and the store keys stay in step for the next run in the same process.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longtail import launch

RANK0_DELAY_S = 1.0  # rank 0 "writes its folder" this long before it says how the run ended


def _spin_while(wait: Any) -> tuple[Any, int, float]:
    """Run ``wait()`` while a Python thread counts: (its result, the count, seconds taken)."""
    count, done = [0], threading.Event()

    def spin() -> None:
        while not done.is_set():
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = wait()
    finally:
        done.set()
        thread.join()
    return result, count[0], time.perf_counter() - t0


def _worker(rank: int, folder: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    shard = launch.Shard(rank, 2)
    got: dict[str, Any] = {}
    try:
        total = torch.ones(3)
        dist.all_reduce(total)  # the last collective before the end, as in a training loop
        if rank == 0:
            time.sleep(RANK0_DELAY_S)  # the final evaluation, probe and writes
            got["first"] = launch.end_together(shard, "complete")
            got["second"] = launch.end_together(shard, "failed")
            got["third"] = launch.end_together(shard, "complete")
        else:
            got["first"], got["spins"], got["waited_s"] = _spin_while(
                lambda: launch.end_together(shard, "complete")
            )
            got["second"] = launch.end_together(shard, "complete")
            t0 = time.perf_counter()
            got["failed_alone"] = launch.end_together(shard, None)  # its own part failed
            got["failed_alone_s"] = time.perf_counter() - t0
        got["plain"] = launch.end_together(launch.Shard(), "complete")
    finally:
        (Path(folder) / f"rank{rank}.pkl").write_bytes(pickle.dumps(got))
        launch.stop()


def test_ranks_end_on_rank_0s_word(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=2, join=True)
    zero, one = (pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2))
    assert zero == {"first": "complete", "second": "failed", "third": "complete",
                    "plain": "complete"}  # fmt: skip
    assert one["first"] == "complete"
    assert one["waited_s"] >= 0.8 * RANK0_DELAY_S  # it waited for rank 0 ...
    assert one["spins"] > 1000  # ... with the GIL free for other threads meanwhile
    assert one["second"] == "failed"  # rank 0 did not finish: the rank is told so
    assert one["failed_alone"] is None and one["failed_alone_s"] < 0.5  # no wait for a failed part
    assert one["plain"] == "complete"  # one process: nothing to wait for

"""Data-parallel training on CPU: 2 gloo ranks take the steps 1 process takes at the same global batch.

The 2-rank side runs once per module (``mp.spawn``, a module fixture) through the trainer's own
parts (``build_training`` with the rank's shard: sharded loader, GatheredBatchNorm, DDP), K steps of
each case; the 1-process side runs the same in this process. Parameters and BatchNorm statistics
must agree within 1e-9 of each tensor's largest value, in float64. The one process uses the same
BatchNorm arithmetic as the ranks (see the test); channels-last is off on both sides.
End-to-end ``torchrun`` runs check one folder and one writer, and that ``kill -9`` of a rank under
``--max-restarts=1`` ends in the same folder with the uninterrupted run's metrics, exactly. (Their
numbers are not compared with one process: in float32 this tiny BatchNorm net at lr 0.1 is chaotic,
so differently ordered sums part ways within an epoch; the float64 steps above are the comparison.)
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from data.fixtures import write_idx, write_split_list
from longtail import launch
from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.errors import LongtailError
from longtail.models.sync_bn import to_gathered
from longtail.train import build
from longtail.train.build import build_training, check_parallel

WORLD = 2
STEPS = 3
LR = 0.1  # the demo's learning rate: large steps, so that a wrong gradient shows
TINY = [
    "data.dataset=fashion_mnist", "data.cache_dir=null", "data.imbalance_ratio=10",
    "model.name=resnet20", "model.kwargs.width=0.5", "train.batch_size=16", "train.device=cpu",
    "train.progress=false", "train.precision=fp32", "train.channels_last=false",
    "schedule.warmup_epochs=0", "probe.enabled=false",
]  # fmt: skip
CASES = {
    "ce": [],
    # LDAM with DRW weights from the first step: the weighted mean must be the global one
    "ldam_drw": [
        "loss.name=ldam",
        "model.classifier=cosine",
        "loss.reweight=class_balanced",
        "loss.reweight_epoch=0",
    ],
    "focal_drs": ["loss.name=focal", "loss.gamma=1.0", "train.resample_epoch=0"],
    # Hybrid-SC: SupCon over the views of both ranks; class-balanced CE branch; joint BatchNorm
    "hybrid_sc": [
        "strategy.name=hybrid",
        "strategy.contrastive=supcon",
        "strategy.proj_hidden=16",
        "strategy.proj_dim=8",
        "train.batch_size=8",
    ],
    # Hybrid-PSC with separate BatchNorm passes; the curriculum at alpha = 0.75
    "hybrid_psc": [
        "strategy.name=hybrid",
        "strategy.contrastive=psc",
        "strategy.proj_hidden=16",
        "strategy.proj_dim=8",
        "strategy.batch_norm=separate",
        "train.batch_size=8",
        "train.epochs=2",
        "START_EPOCH=1",
    ],
    # Hybrid-MPSC (two prototypes a class) with square-root contrastive batches
    "hybrid_mpsc_sqrt": [
        "strategy.name=hybrid",
        "strategy.contrastive=mpsc",
        "strategy.contrastive_sampler=sqrt",
        "strategy.proj_hidden=16",
        "strategy.proj_dim=8",
        "train.batch_size=8",
    ],
    # Hybrid-SC with P = 1 drawn positive (the iNat setting): each rank keeps its share of the
    # global draw, placed as one process's [v1; v2] stack (views rank-major after the gather); at
    # P = 1 any class seen twice in the 16 views has more candidates than P, so the draw decides
    "hybrid_sc_positives": [
        "strategy.name=hybrid",
        "strategy.contrastive=supcon",
        "strategy.positives=1",
        "strategy.proj_hidden=16",
        "strategy.proj_dim=8",
        "train.batch_size=8",
    ],
    # Hybrid-CE-CE: CE in both branches
    "hybrid_ce_ce": ["strategy.name=hybrid", "strategy.contrastive=ce", "train.batch_size=8"],
    # class-balanced CE with the progressive sampler half-way through its schedule
    "cb_progressive": [
        "loss.name=class_balanced",
        "loss.reweight=none",
        "train.sampler=progressive",
        "train.epochs=2",
        "START_EPOCH=1",
    ],
}
PRETRAIN = ["loss.reweight=none", "loss.reweight_epoch=0", "augment.crop=resized",
            "augment.jitter=[0.4,0.4,0.4,0.1]", "strategy.proj_hidden=16", "strategy.proj_dim=8",
            "train.batch_size=8"]  # fmt: skip
CASES |= {  # pre-training (the demo's DRW off: these train no classifier)
    "simclr": [*PRETRAIN, "strategy.name=simclr", "strategy.temperature=0.5"],
    "supcon": [*PRETRAIN, "strategy.name=supcon"],
    # rwSAM: KDE weights from every rank's identical backbone, both SAM passes synchronised
    "simsiam_rwsam": [*PRETRAIN, "strategy.name=simsiam", "strategy.pred_hidden=4", "sam.rho=0.5", "sam.adaptive=true",
                      "sam.weights=kde", "sam.neighbors=3"],
    # KCL: the queue fills with every rank's keys; the k-positive draw is the global draw's rows
    "kcl": [*PRETRAIN, "strategy.name=kcl", "strategy.k=2", "strategy.queue_size=48",
            "strategy.temperature=0.2"],
    "moco": [*PRETRAIN, "strategy.name=moco", "strategy.queue_size=48", "strategy.temperature=0.2"],
    # BCL: every rank's views contrasted with the class centres (parameters, equal on every rank)
    "bcl": ["loss.name=logit_adjusted", "loss.reweight=none", "loss.reweight_epoch=0",
            "model.classifier=cosine", "strategy.name=bcl", "strategy.logit_scale=16",
            "strategy.proj_hidden=16", "strategy.proj_dim=8", "train.batch_size=8"],
}  # fmt: skip
# the streaming path (DataLoader decoding of files, crops drawn for the global batch and sharded):
# a published-style list used as given, RandomResizedCrop + flip in the workers, jitter on device
STREAMED = [
    "data.dataset=split_list",
    "data.subset_rule=none",
    "data.loader=stream",
    "data.workers=0",
    "data.image_size=16",
    "augment.crop=resized",
    "augment.jitter=[0.4,0.4,0.4,0.1]",
    "loss.reweight_epoch=0",
    "train.batch_size=8",
]
CASES |= {
    "stream_ce": STREAMED,
    "stream_hybrid_sc": [*STREAMED, "strategy.name=hybrid", "strategy.contrastive=supcon",
                         "strategy.proj_hidden=16", "strategy.proj_dim=8"],
}  # fmt: skip
# run by the ranks alone: SAM's first pass without gradient synchronisation (the speed option) is
# no longer one process's step, but the ranks still agree (the update pass is synchronised)
UNSYNCED = {"simsiam_rwsam_unsynced": [*CASES["simsiam_rwsam"], "sam.sync_first=false"]}
# one xdist worker runs every multi-process test (two cores: two ranks at a time)
pytestmark = [pytest.mark.dist, pytest.mark.xdist_group("dist"), pytest.mark.timeout(240)]


def _steps(root: str, overrides: list[str]) -> dict[str, Any]:
    """K steps of the trainer's parts on this process's shard, in float64: parameters, buffers,
    losses. (In float32 a deep BatchNorm net's first gradients cancel so much that W ranks and one
    process, which sum in different orders, differ by up to 1e-3 in conv1: measured.)"""
    torch.set_default_dtype(torch.float64)
    try:
        return _float64_steps(root, overrides)
    finally:
        torch.set_default_dtype(torch.float32)


def _float64_steps(root: str, overrides: list[str]) -> dict[str, Any]:
    start = next((int(o.split("=")[1]) for o in overrides if o.startswith("START_EPOCH=")), 0)
    overrides = [o for o in overrides if not o.startswith("START_EPOCH=")]
    if "data.loader=stream" in overrides:  # the files and list the module fixture wrote
        overrides = [f"data.root={root}/stream", f"data.train_list={root}/stream/train.txt",
                     f"data.test_list={root}/stream/test.txt", *overrides]  # fmt: skip
    cfg = load_config("recipes/demo.yaml", [*TINY, f"data.root={root}", *overrides])
    device, shard = launch.start(torch.device("cpu"))
    data = prepare_data(cfg.data, device)
    parts = build_training(cfg, data, device, shard)
    parts.start_epoch(cfg.train, start, device)
    parts.model.train()
    batches = iter(parts.loader)
    losses = [launch.mean_over_ranks(parts.step(next(batches), LR), shard).item()
              for _ in range(STEPS)]  # fmt: skip
    state = {k: v.detach().numpy().copy() for k, v in parts.model.state_dict().items()}
    return {"losses": losses, "state": state}


def _worker(process: int, world: int, root: str, port: int, out: str) -> None:
    os.environ.update(RANK=str(process), LOCAL_RANK=str(process), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")  # fmt: skip
    torch.set_num_threads(1)
    try:
        cases = CASES | UNSYNCED
        results = {name: _steps(root, overrides) for name, overrides in cases.items()}
    finally:
        launch.stop()
    with open(f"{out}/rank{process}.pkl", "wb") as handle:
        pickle.dump(results, handle)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp_idx")
    write_idx(root, n_train_per_class=40, n_test_per_class=5)
    write_split_list(root / "stream", [12, 8, 6, 4], num_classes=4)  # the streamed cases' files
    write_split_list(root / "stream", 2, num_classes=4, list_name="test.txt", seed=5, folder="test")
    return root


@pytest.fixture(scope="module")
def ranks(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp_ranks")
    mp.spawn(_worker, args=(WORLD, str(idx_root), _free_port(), str(out)), nprocs=WORLD, join=True)
    return [pickle.loads((out / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if value.dtype.kind != "f":
            np.testing.assert_array_equal(got[key], value, err_msg=key)
            continue
        scale = max(float(np.abs(value).max()), 1.0)  # parameters are O(1); a bias near 0 too
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-9 * scale, err_msg=key)


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_take_the_steps_of_one_process(
    ranks: list[dict[str, Any]], idx_root: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one process uses the ranks' BatchNorm arithmetic (GatheredBatchNorm, whose equality
    with nn.BatchNorm over the whole batch test_dist.py checks in float64), so that what is
    compared is the data parallelism alone."""
    monkeypatch.setattr(build, "convert_sync_batchnorm", lambda model, device: to_gathered(model))
    one = _steps(str(idx_root), CASES[case])
    for rank in ranks:
        assert rank[case]["losses"] == pytest.approx(one["losses"], rel=1e-8)
        _assert_close(rank[case]["state"], one["state"])
    _assert_close(ranks[1][case]["state"], ranks[0][case]["state"])


def test_an_unsynchronised_first_sam_pass_keeps_the_ranks_equal(
    ranks: list[dict[str, Any]],
) -> None:
    """Each rank perturbs by its own gradient, then both step with the averaged update gradient:
    equal ranks, a different step from the synchronised one (else the option did nothing)."""
    got, synced = (ranks[0][c]["state"] for c in ("simsiam_rwsam_unsynced", "simsiam_rwsam"))
    _assert_close(ranks[1]["simsiam_rwsam_unsynced"]["state"], got)
    moved = [k for k, v in got.items() if v.dtype.kind == "f" and not np.allclose(v, synced[k])]
    assert moved, "sam.sync_first=false took the synchronised step"


def test_a_global_batch_that_does_not_split_is_one_line() -> None:
    cfg = load_config("recipes/demo.yaml", ["train.batch_size=16"])
    with pytest.raises(LongtailError, match="train.batch_size=16 does not split over 3 processes"):
        check_parallel(cfg.train, launch.Shard(0, 3))
    check_parallel(cfg.train, launch.Shard(1, 2))  # 8 a rank: fine


E2E_EPOCHS = 4


def _torchrun(
    idx_root: Path, out: Path, *flags: str, overrides: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """``torchrun --nproc_per_node=2 -m longtail train`` on the tiny data (2 ranks x 1 thread).

    Its output goes to files beside ``out``, never to pipes: a pipe nobody reads while the test
    polls fills up, and a rank blocked writing a warning then misses the rendezvous."""
    args = ["recipes/demo.yaml", *TINY, f"data.root={idx_root}", f"train.epochs={E2E_EPOCHS}",
            "train.threads=1", "eval.every=1", f"out_dir={out}", *overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={WORLD}", *flags, "-m", "longtail", "train", *args]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    logs = out.parent / "torchrun"
    with logs.with_suffix(".out").open("w") as stdout, logs.with_suffix(".err").open("w") as stderr:
        proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=True, env=env)
    proc.logs = logs  # type: ignore[attr-defined]
    return proc


def _finished(proc: subprocess.Popen[str]) -> str:
    proc.wait(timeout=200)
    logs: Path = proc.logs  # type: ignore[attr-defined]
    assert proc.returncode == 0, logs.with_suffix(".err").read_text()[-3000:]
    return logs.with_suffix(".out").read_text()


def _metrics(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """An uninterrupted 2-rank run: (its stdout, its output folder)."""
    out = tmp_path_factory.mktemp("ddp_two") / "runs"
    return _finished(_torchrun(idx_root, out)), out


def test_torchrun_writes_one_folder_with_one_writer(uninterrupted: tuple[str, Path]) -> None:
    stdout, out = uninterrupted
    (folder,) = out.iterdir()
    lines = stdout.strip().splitlines()
    assert lines[-1] == str(folder)  # rank 0 alone prints the summary, then the folder
    assert sum(line.lstrip().startswith("top-1") for line in lines) == 1
    assert json.loads((folder / "status.json").read_text())["state"] == "complete"
    assert [m["epoch"] for m in _metrics(folder)] == list(range(1, E2E_EPOCHS + 1))
    assert not list(folder.glob("*.tmp*"))  # nothing half-written


def test_a_nan_loss_stops_every_rank_with_one_line(idx_root: Path, tmp_path: Path) -> None:
    """The NaN check reads the loss averaged over ranks, so both ranks stop in the same step with
    the same error; rank 0 alone prints it. The folder is marked failed, with no final.json."""
    out = tmp_path / "runs"
    proc = _torchrun(idx_root, out, overrides=("optim.lr=1e30", "train.epochs=2"))
    proc.wait(timeout=200)
    logs: Path = proc.logs  # type: ignore[attr-defined]
    errors = [x for x in logs.with_suffix(".err").read_text().splitlines() if "error:" in x]
    assert proc.returncode != 0
    assert len(errors) == 1 and errors[0].startswith("error: training loss became nan in epoch 1")
    assert "lower optim.lr" in errors[0] and "no checkpoint was written yet" in errors[0]
    (folder,) = out.iterdir()
    assert json.loads((folder / "status.json").read_text())["state"] == "failed"
    assert not (folder / "final.json").exists()


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker of ``rank`` (a child whose environment says RANK=rank)."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


def test_kill_9_of_a_rank_restarts_into_the_same_folder_and_the_same_result(
    uninterrupted: tuple[str, Path], idx_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    proc = _torchrun(idx_root, out, "--max-restarts=1")
    deadline = time.monotonic() + 120
    while not list(out.glob("*/checkpoint.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint, or it ended"
        time.sleep(0.05)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    stdout = _finished(proc)
    (folder,) = out.iterdir()  # the restart continued the first attempt's folder
    assert stdout.strip().splitlines()[-1] == str(folder)
    assert json.loads((folder / "status.json").read_text())["state"] == "complete"
    got, want = _metrics(folder), _metrics(next(uninterrupted[1].iterdir()))
    assert [m["epoch"] for m in got] == list(range(1, E2E_EPOCHS + 1))
    for a, b in zip(got, want, strict=True):  # resuming on CPU is exact, under DDP too
        assert (a["train_loss"], a["top1"]) == (b["train_loss"], b["top1"])
    final = [
        json.loads((f / "final.json").read_text())
        for f in (folder, next(uninterrupted[1].iterdir()))
    ]
    assert final[0]["top1"] == final[1]["top1"] and final[0]["per_class"] == final[1]["per_class"]


def test_a_stage_two_starts_from_a_torchrun_run(
    uninterrupted: tuple[str, Path], tmp_path: Path
) -> None:
    """cRT from the folder a 2-rank run wrote: its checkpoint is a plain model's (no DDP prefix,
    GatheredBatchNorm's keys are BatchNorm's), so a one-process stage 2 loads it as any other."""
    source = next(uninterrupted[1].iterdir())
    config = yaml.safe_load((source / "config.yaml").read_text())
    args = ["recipes/demo.yaml", *TINY, f"data.root={config['data']['root']}", "train.epochs=1",
            f"init.run={source}", "strategy.name=decoupled", "init.freeze=backbone",
            "init.reset_classifier=true",
            "train.sampler=class_balanced", "loss.reweight=none", f"out_dir={tmp_path}"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "longtail", "train", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    final = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "final.json").read_text())
    assert final.get("frozen_tensors_unchanged", 0) > 0 and 0 <= final["top1"] <= 100

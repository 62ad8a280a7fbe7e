"""End-to-end training on tiny data in the real Fashion-MNIST idx format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.errors import LongtailError
from longtail.train import loop
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import resume, train

TINY = [
    "data.dataset=fashion_mnist",
    "data.imbalance_ratio=10",
    "data.cache_dir=",
    "model.name=resnet20",
    "model.kwargs.width=0.5",
    "train.batch_size=32",
    "train.progress=false",
    "train.device=cpu",
    "schedule.warmup_epochs=1",
    "schedule.milestones=[2]",
    "schedule.gamma=0.1",
]


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fmnist")
    write_idx(root, n_train_per_class=40, n_test_per_class=10)
    return root


def _cfg(idx_root: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*TINY, f"data.root={idx_root}", f"out_dir={out}", *extra])


def test_run_folder_is_complete_and_self_describing(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=2", "name=smoke"))
    assert run.parent == tmp_path and run.name.endswith("-smoke")
    names = {p.name for p in run.iterdir()}
    expected = {"config.yaml", "lt_index.json", "metrics.jsonl", "checkpoint.pt", "final.json"}
    assert expected | {"status.json", "per_class.png"} <= names
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    final = json.loads((run / "final.json").read_text())
    index = json.loads((run / "lt_index.json").read_text())
    # LT counts: floor(40 * 10^(-c/9)) per class, and the saved index reproduces them
    assert final["train_counts"] == [int(40 * 0.1 ** (c / 9)) for c in range(10)]
    assert index["counts"] == final["train_counts"] and len(index["indices"]) == index["total"]
    assert len(final["per_class"]) == 10 and final["num_classes"] == 10
    for key in ("top1", "many", "medium", "few", "head", "middle", "tail", "wall_s", "commit"):
        assert key in final
    assert final["many"] is None  # no class has > 100 images here: an empty group is null
    assert json.loads((run / "status.json").read_text())["state"] == "complete"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["optim"]["lr"] == 0.1  # defaults written out


def test_learns_the_tiny_task(idx_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        idx_root, tmp_path, "train.epochs=4", "data.imbalance_ratio=1", "schedule.kind=cosine"
    )
    final = json.loads((train(cfg) / "final.json").read_text())
    assert final["top1"] > 40.0, final["top1"]  # 10 classes: chance is 10%


@pytest.mark.parametrize("extra", [[], ["train.max_steps_per_epoch=2", "train.sampler=sqrt"]])
def test_resume_continues_exactly(idx_root: Path, tmp_path: Path, extra: list[str]) -> None:
    straight = train(_cfg(idx_root, tmp_path / "a", "train.epochs=3", *extra))
    half = train(_cfg(idx_root, tmp_path / "b", "train.epochs=1", *extra))
    (half / "metrics.jsonl").open("a").write('{"epoch": 2, "train_lo')  # torn by a crash
    resumed = resume(half, ["train.epochs=3"])
    assert resumed == half
    assert yaml.safe_load((half / "config.yaml").read_text())["train"]["epochs"] == 3
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = [
        [
            json.loads(line)["train_loss"]
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]
        for run in (straight, resumed)
    ]
    assert losses[0] == losses[1]


def test_eval_reproduces_final_top1(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=1"))
    final = json.loads((run / "final.json").read_text())
    again = evaluate_run(run)
    assert again["top1"] == final["top1"] and again["per_class"] == final["per_class"]
    assert (run / "eval.json").is_file()


def test_missing_data_leaves_no_run_folder(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"data.root={tmp_path / 'nope'}", f"out_dir={tmp_path / 'o'}"])
    with pytest.raises(LongtailError, match="does not exist"):
        train(cfg)
    assert not (tmp_path / "o").exists()


def test_zero_sample_class_is_refused(idx_root: Path, tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="zero training images|0 images|ratio"):
        train(_cfg(idx_root, tmp_path, "data.imbalance_ratio=100"))


def test_nan_loss_stops_with_one_line_and_keeps_no_final(idx_root: Path, tmp_path: Path) -> None:
    cfg = _cfg(idx_root, tmp_path, "train.epochs=2", "optim.lr=1e30", "schedule.warmup_epochs=0")
    with pytest.raises(LongtailError, match="loss became") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    (run,) = tmp_path.iterdir()
    assert not (run / "final.json").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"


def test_a_loss_diverging_after_a_checkpoint_names_its_steps_and_resumes_at_a_lower_rate(
    idx_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    import torch

    from longtail.optim.stepper import Stepper

    step, calls = Stepper.__call__, []

    def diverging(self, batch, lr):  # type: ignore[no-untyped-def]
        calls.append(lr)
        loss = step(self, batch, lr)
        return loss * float("nan") if len(calls) > steps_per_epoch else loss

    from longtail.data.setup import describe_subset

    cfg = _cfg(
        idx_root, tmp_path, "train.epochs=2", "schedule.warmup_epochs=0", "probe.enabled=false"
    )
    steps_per_epoch = describe_subset(cfg.data)["total"] // cfg.train.batch_size  # drop_last
    monkeypatch.setattr(Stepper, "__call__", diverging)
    with pytest.raises(LongtailError) as info:
        train(cfg)
    (run,) = tmp_path.iterdir()
    message = str(info.value)
    spe = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"]
    assert re.search(rf"loss became nan in epoch 2, steps {spe + 1}-{2 * spe}:", message), message
    assert f"longtail train resume={run} optim.lr=" in message and "\n" not in message
    monkeypatch.setattr(Stepper, "__call__", step)
    lower = float(message.rsplit("optim.lr=", 1)[1])
    resumed = resume(run, [f"optim.lr={lower}"])
    assert json.loads((resumed / "final.json").read_text())["epochs"] == 2
    assert load_config(resumed / "config.yaml").optim.lr == lower
    assert torch.load(resumed / "checkpoint.pt")["epoch"] == 2


def test_resume_rules(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=2"))
    first = json.loads((run / "final.json").read_text())
    with pytest.raises(LongtailError, match="cannot be changed here"):
        resume(run, ["optim.weight_decay=0.5"])
    with pytest.raises(LongtailError, match="below the 2 epochs already done"):
        resume(run, ["train.epochs=1"])
    assert json.loads((run / "final.json").read_text()) == first  # refused: nothing touched
    resume(run, ["train.epochs=3"])  # extending a finished run replaces its results
    final = json.loads((run / "final.json").read_text())
    assert final["epochs"] == 3
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]


def test_interrupt_marks_the_run_and_names_the_resume_command(
    idx_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = loop.lr_factor

    def interrupt_in_epoch_two(*args: object) -> float:
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "lr_factor", interrupt_in_epoch_two)
    with pytest.raises(LongtailError, match="longtail train resume=") as info:
        train(_cfg(idx_root, tmp_path, "train.epochs=3"))
    (run,) = tmp_path.iterdir()
    assert str(run) in str(info.value)
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    assert not (run / "final.json").exists() and (run / "checkpoint.pt").exists()
    monkeypatch.setattr(loop, "lr_factor", real)
    assert resume(run) == run and (run / "final.json").exists()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["model.name=resnet99"], "resnet99"),
        (["model.kwargs.depth=3"], "depth"),
        (["name=../escape"], "one folder name"),
        (["augment.resized_scale=[0.5]"], "resized_scale"),
        (["train.max_steps_per_epoch=0"], ">= 1"),
    ],
)
def test_bad_config_leaves_no_run_folder(
    idx_root: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    with pytest.raises(LongtailError, match=fragment):
        train(_cfg(idx_root, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


def test_damaged_checkpoint_and_config_are_one_line(idx_root: Path, tmp_path: Path) -> None:
    run = train(_cfg(idx_root, tmp_path, "train.epochs=1"))
    (run / "checkpoint.pt").write_bytes(b"torn")
    for call in (lambda: evaluate_run(run), lambda: resume(run, ["train.epochs=2"])):
        with pytest.raises(LongtailError, match="cannot read"):
            call()
    (run / "config.yaml").write_text("- a list\n")
    with pytest.raises(LongtailError, match="mapping"):
        evaluate_run(run)


def test_the_folder_records_the_resolved_precision_and_resume_keeps_it(
    idx_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` is written as what it meant where the run started; a resume elsewhere keeps it."""
    from longtail import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # a CPU with native bf16
    run = train(_cfg(idx_root, tmp_path, "train.epochs=1", "train.precision=auto"))
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16"
    assert json.loads((run / "final.json").read_text())["precision"] == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)  # resumed on an AVX2 CPU
    resume(run, ["train.epochs=2"])
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "bf16"
    assert json.loads((run / "final.json").read_text())["precision"] == "bf16"
    fp32 = train(_cfg(idx_root, tmp_path / "b", "train.epochs=1", "train.precision=auto"))
    assert json.loads((fp32 / "final.json").read_text())["precision"] == "fp32"


def test_training_starts_from_model_pretrained(idx_root: Path, tmp_path: Path) -> None:
    """The trainer's model is the file's backbone with a fresh head (other class count)."""
    from longtail.data.setup import prepare_data
    from longtail.models import create_model
    from longtail.train.build import build_training

    torch.manual_seed(5)
    source = create_model("resnet20", 4, in_chans=1, width=0.5).state_dict()
    torch.save(source, tmp_path / "w.pth")
    cfg = _cfg(idx_root, tmp_path, f"model.pretrained={tmp_path / 'w.pth'}")
    data = prepare_data(cfg.data, torch.device("cpu"))
    state = build_training(cfg, data, torch.device("cpu")).model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items() if not k.startswith("fc."))
    assert state["fc.weight"].shape[0] == data.num_classes != 4

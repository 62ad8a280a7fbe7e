"""Published long-tailed splits (ImageNet-LT, Places-LT, iNaturalist) used as given.

``data.subset_rule=none`` keeps every line of a list; ``data.train_list`` / ``val_list`` /
``test_list`` name the lists; ``longtail data`` counts a list without decoding (or even having)
its images; tau-norm chooses tau on the published validation list.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data.fixtures import write_split_list
from longtail.cli import main
from longtail.config import Config, load_config
from longtail.data.registry import list_files
from longtail.data.setup import describe_subset, prepare_data, prepare_validation
from longtail.errors import LongtailError
from shared_data import require_shared

# (list, images, classes, largest class, smallest class): counted from the published files
PUBLISHED = [
    ("ImageNet_LT_val.txt", 20_000, 1000, 20, 20),
    ("ImageNet_LT_test.txt", 50_000, 1000, 50, 50),
    ("Places_LT_train.txt", 62_500, 365, 4980, 5),
    ("Places_LT_val.txt", 7_300, 365, 20, 20),
    ("Places_LT_test.txt", 36_500, 365, 100, 100),
]


@pytest.mark.parametrize(("name", "total", "classes", "most", "fewest"), PUBLISHED)
def test_published_lists_count_exactly_without_their_images(
    name: str, total: int, classes: int, most: int, fewest: int
) -> None:
    listed = require_shared(f"splits/{name}")
    labelled = list_files(
        "split_list", "/nonexistent-image-root", "train", listed, check_files=False
    )
    assert labelled is not None
    _, labels, names = labelled
    counts = np.bincount(labels, minlength=classes)
    assert (len(labels), len(names)) == (total, classes)
    assert (counts.max(), counts.min()) == (most, fewest)


def test_longtail_data_counts_places_lt_as_published(capsys: pytest.CaptureFixture[str]) -> None:
    listed = require_shared("splits/Places_LT_train.txt")
    args = ["recipes/demo.yaml", "data.dataset=split_list", "data.root=/no-images-here",
            f"data.train_list={listed}", "data.subset_rule=none", "data.image_size=32"]  # fmt: skip
    assert main(["data", *args]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["total"] == 62_500 and len(record["counts"]) == 365
    assert (
        record["counts"][:3]
        == np.bincount(
            [int(line.split()[1]) for line in listed.read_text().split("\n") if line.strip()]
        )[:3].tolist()
    )


@pytest.fixture
def lists(tmp_path: Path) -> dict[str, Path]:
    """An image root with long-tailed train, balanced val and test lists beside it (not in it)."""
    root, train, _ = write_split_list(tmp_path, [9, 4, 2], num_classes=3, list_name="train.txt")
    _, val, _ = write_split_list(tmp_path, 2, num_classes=3, list_name="val.txt", seed=5)
    _, test, _ = write_split_list(tmp_path, 3, num_classes=3, list_name="test.txt", seed=9)
    elsewhere = tmp_path / "splits"
    elsewhere.mkdir()
    moved = {}
    for split, path in (("train", train), ("val", val), ("test", test)):
        moved[split] = path.rename(elsewhere / f"LT_{split}.txt")
    moved["root"] = root
    return moved


def _cfg(lists: dict[str, Path], *extra: str) -> Config:
    return load_config("recipes/demo.yaml", [*_overrides(lists), *extra])


def test_a_list_used_as_published_keeps_every_line(lists: dict[str, Path]) -> None:
    cfg = _cfg(lists)
    data = prepare_data(cfg.data, torch.device("cpu"))
    want = [int(x.split()[1]) for x in lists["train"].read_text().splitlines() if x.strip()]
    assert data.train_labels.tolist() == want  # every line, in list order
    assert data.train_counts == [9, 4, 2] and data.index_record["indices"] == list(range(15))
    assert data.index_record["rule"] == "none" and len(data.test_labels) == 9
    assert describe_subset(cfg.data) == {"dataset": "split_list", "counts": [9, 4, 2], "total": 15}
    images, labels, indices = prepare_validation(
        cfg.data, data.index_record, torch.device("cpu"), per_class=50, seed=0
    )
    assert images.shape == (6, 3, 16, 16) and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert indices.tolist() == list(range(6))


def test_a_subset_of_a_list_is_still_the_default(lists: dict[str, Path]) -> None:
    cfg = _cfg(lists, "data.subset_rule=shuffle", "data.imbalance_ratio=2", "data.n_max=4")
    assert describe_subset(cfg.data)["counts"] == [4, 2, 2]  # floor(4 * 2^(-c/2))


def test_lists_name_only_split_list_data() -> None:
    with pytest.raises(LongtailError, match="data.val_list names a split list.*split_list"):
        load_config("recipes/demo.yaml", ["data.val_list=val.txt"])


def test_taunorm_chooses_on_the_published_val_list(lists: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs"
    args = ["recipes/demo.yaml", *_overrides(lists), "train.epochs=1",
            "train.batch_size=5", "train.device=cpu", "train.progress=false",
            "probe.enabled=false", "schedule.warmup_epochs=0", "model.name=resnet20",
            "model.kwargs.width=0.25", f"out_dir={out}"]  # fmt: skip
    assert main(["train", *args]) == 0
    (run,) = out.iterdir()
    assert main(["taunorm", str(run)]) == 0
    result = json.loads((run / "taunorm.json").read_text())
    assert result["val_source"] == f"published list {lists['val']}"
    assert result["val_indices"] == list(range(6))


def _overrides(lists: dict[str, Path]) -> list[str]:
    return ["data.dataset=split_list", f"data.root={lists['root']}", "data.image_size=16",
            "data.cache_dir=null", f"data.train_list={lists['train']}",
            f"data.val_list={lists['val']}", f"data.test_list={lists['test']}",
            "data.subset_rule=none"]  # fmt: skip


def test_pack_of_a_split_list(lists: dict[str, Path], tmp_path: Path) -> None:
    """``longtail pack`` on a split list (it stopped with 'set data.image_size' though it was set)."""
    out = tmp_path / "lists.npz"
    assert main(["pack", "recipes/demo.yaml", str(out), *_overrides(lists)]) == 0
    assert out.is_file() and out.stat().st_size > 0


def test_a_streamed_run_trains_and_evaluates_from_the_files(
    lists: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = ["recipes/demo.yaml", *_overrides(lists), "data.loader=stream", "data.workers=2",
            "augment.crop=resized", "train.epochs=2", "train.batch_size=5", "train.device=cpu",
            "train.progress=false", "probe.enabled=false", "schedule.warmup_epochs=0",
            "model.name=resnet20", "model.kwargs.width=0.25", f"out_dir={out}"]  # fmt: skip
    assert main(["train", *args]) == 0
    (run,) = out.iterdir()
    final = json.loads((run / "final.json").read_text())
    assert len(final["per_class"]) == 3 and final["epochs"] == 2
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]


def test_the_probes_read_a_streamed_runs_files(lists: dict[str, Path], tmp_path: Path) -> None:
    """kNN and the balanced linear probe on a streamed run: FileImages, nothing decoded up front."""
    out = tmp_path / "runs"
    args = ["recipes/demo.yaml", *_overrides(lists), "data.loader=stream", "data.workers=0",
            "augment.crop=resized", "train.epochs=1", "train.batch_size=5", "train.device=cpu",
            "train.progress=false", "probe.enabled=true", "probe.balanced_per_class=2",
            "probe.iterations=3", "schedule.warmup_epochs=0", "model.name=resnet20",
            "model.kwargs.width=0.25", f"out_dir={out}"]  # fmt: skip
    assert main(["train", *args]) == 0
    final = json.loads((next(out.iterdir()) / "final.json").read_text())
    assert 0 <= final["probe_top1"] <= 100 and 0 <= final["probe_knn_top1"] <= 100


def test_auto_keeps_small_data_on_the_device_and_says_so(
    lists: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = prepare_data(_cfg(lists, "data.loader=auto").data, torch.device("cpu"))
    assert isinstance(data.train_images, torch.Tensor)
    assert "holding them on the device" in capsys.readouterr().err


def test_streaming_reads_image_files_only() -> None:
    cfg = load_config("recipes/demo.yaml", ["data.loader=stream", "data.image_size=32"])
    with pytest.raises(LongtailError, match="data.loader=stream reads image files"):
        prepare_data(cfg.data, torch.device("cpu"))


@pytest.mark.parametrize("loader", ["device", "stream"])
def test_a_mid_epoch_checkpoint_resumes_exactly(
    lists: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str
) -> None:
    """Stopped inside epoch 2 (Ctrl-C before its 2nd step; checkpoints every step), resumed: the
    metrics and final result are the uninterrupted run's, bit for bit (CPU)."""
    from longtail.optim.stepper import Stepper
    from longtail.run_folder import RunFolder
    from longtail.train.trainer import resume, train

    def cfg(out: Path) -> Config:
        return _cfg(lists, f"data.loader={loader}", "data.workers=0", "augment.crop=resized",
                    "train.epochs=2", "train.batch_size=5", "train.device=cpu",
                    "train.progress=false", "probe.enabled=false", "schedule.warmup_epochs=0",
                    "model.name=resnet20", "model.kwargs.width=0.25", "train.precision=fp32",
                    "train.checkpoint_every_steps=1", f"out_dir={out}")  # fmt: skip

    whole = train(cfg(tmp_path / "whole"))
    calls = {"n": 0}
    original = Stepper.__call__

    def interrupting(self: Stepper, batch: object, lr: float) -> object:
        calls["n"] += 1
        if calls["n"] == 5:  # 3 steps an epoch: epoch 2's second step
            raise KeyboardInterrupt
        return original(self, batch, lr)

    monkeypatch.setattr(Stepper, "__call__", interrupting)
    with pytest.raises(LongtailError, match="interrupted: continue with"):
        train(cfg(tmp_path / "cut"))
    monkeypatch.setattr(Stepper, "__call__", original)
    (cut,) = (tmp_path / "cut").iterdir()
    state = RunFolder.open(cut).load_checkpoint()
    assert (state["epoch"], state["within"]["batch"]) == (1, 1)
    resume(cut)
    got, want = (RunFolder(f).read_metrics() for f in (cut, whole))
    assert [(m["train_loss"], m.get("top1")) for m in got] == [
        (m["train_loss"], m.get("top1")) for m in want
    ]
    finals = [json.loads((f / "final.json").read_text()) for f in (cut, whole)]
    assert finals[0]["per_class"] == finals[1]["per_class"] and len(got) == 2

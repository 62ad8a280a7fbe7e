"""Bad input, fuzzed from a table: every bad config value and every bad file is one line on stderr,
a non-zero exit, and nothing written or changed (issue 17)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from data.fixtures import write_idx, write_image_folder
from longtail.cli import main
from longtail.config import load_config
from longtail.train.trainer import train
from tiny_runs import tiny_run

pytestmark = pytest.mark.xdist_group("bad_inputs")  # one tiny run, trained once

# refused by `longtail config` (the resolved config is validated before anything is built)
BAD_VALUES = [
    "data.dataset=imagenet",
    "data.imbalance_ratio=0",
    "data.imbalance_ratio=-5",
    "data.imbalance_ratio=abc",
    "data.imbalance_ratio=.nan",
    "data.profile=linear",
    "data.subset_rule=random",
    "data.subset_seed=-1",
    "data.subset_seed=99999999999",
    "data.total=0",
    "data.total=-10",
    "data.n_max=0",
    "data.test_limit=0",
    "data.test_limit=-1",
    "data.channels=2",
    "data.image_size=0",
    "data.image_size=-32",
    "data.loader=gpu",
    "data.workers=-1",
    "augment.crop=random",
    "augment.padding=-1",
    "augment.pad_mode=edge",
    "augment.resized_scale=[0.8,0.2]",
    "augment.resized_scale=[0,1]",
    "augment.jitter=[0.1,0.1]",
    "augment.jitter_p=1.5",
    "augment.grayscale_p=-0.1",
    "model.classifier=mlp",
    "model.kwargs=5",
    "loss.name=hinge",
    "loss.gamma=-1",
    "loss.cb_type=dice",
    "loss.beta=1.5",
    "loss.max_margin=-0.5",
    "loss.scale=0",
    "optim.name=adam",
    "optim.lr=0",
    "optim.lr=-0.1",
    "optim.lr=.inf",
    "optim.weight_decay=-1",
    "optim.weight_decay=.nan",
    "optim.momentum=5",
    "optim.momentum=-0.1",
    "schedule.name=exp",
    "schedule.milestones=[180,160]",
    "schedule.milestones=[-5]",
    "schedule.warmup_epochs=-1",
    "schedule.warmup_epochs=.nan",
    "train.epochs=0",
    "train.epochs=-3",
    "train.epochs=2.5",
    "train.batch_size=0",
    "train.batch_size=-8",
    "train.seed=-1",
    "train.seed=2**40",
    "train.sampler=weighted",
    "train.precision=fp8",
    "train.max_steps_per_epoch=0",
    "train.checkpoint_every_steps=-1",
    "strategy.name=byol",
    "strategy.temperature=0",
    "strategy.temperature=-0.1",
    "strategy.k=0",
    "strategy.queue_size=-1",
    "sam.rho=-1",
    "sam.weights=uniform",
    "probe.size=huge",
    "probe.balanced_per_class=0",
    "eval.every=0",
    "eval.tau_norm=-1",
    "eval.batch_size=0",
    "optim.lrr=0.1",
    "train=5",
    "nokey",
]
# refused by `longtail train` when it builds the model or picks the device, before a run folder
BAD_AT_BUILD = {  # the value, and what its line says
    "model.kwargs.bogus=1": "bogus",
    "model.kwargs.width=-1": "width",
    "model.name=resnet9000": "resnet9000",
    "train.device=tpu": "tpu",
}


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err

    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_table_is_big_enough() -> None:
    assert len(BAD_VALUES) + len(BAD_AT_BUILD) >= 60 and len(BAD_FILES) >= 20


@pytest.mark.parametrize("value", BAD_VALUES)
def test_a_bad_config_value_is_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_error(capsys, main(["config", "recipes/demo.yaml", value]))
    key = value.split("=", 1)[0].split(".")[0]
    assert key in line or "=" not in value, line  # the line names what is wrong


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_idx")
    write_idx(root, n_train_per_class=12, n_test_per_class=2)
    return root


@pytest.mark.parametrize("value", BAD_AT_BUILD)
def test_a_bad_model_or_device_stops_before_a_run_folder(
    value: str, idx_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs"
    args = [*tiny_run(idx_root, "probe.enabled=false"), f"out_dir={out}", value]  # fails first
    assert BAD_AT_BUILD[value] in _one_line_error(
        capsys, main(["train", "recipes/demo.yaml", *args])
    )
    assert not out.exists()


@pytest.fixture(scope="module")
def run(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad_run")
    return train(load_config(None, tiny_run(idx_root, "train.epochs=1", "probe.enabled=false",
                                            f"out_dir={out}")))  # fmt: skip


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.lock"}  # fmt: skip


def _recipe(tmp: Path, data: bytes) -> list[str]:
    (tmp / "r.yaml").write_bytes(data)
    return ["config", str(tmp / "r.yaml")]


def _split_list(tmp: Path, data: bytes) -> list[str]:
    (tmp / "img").mkdir(exist_ok=True)
    (tmp / "train.txt").write_bytes(data)
    (tmp / "test.txt").write_bytes(b"a.png 0\n")
    return ["data", "recipes/demo.yaml", "data.dataset=split_list", f"data.root={tmp}",
            "data.image_size=8", f"data.train_list={tmp / 'train.txt'}",
            f"data.test_list={tmp / 'test.txt'}", "data.cache_dir=null"]  # fmt: skip


def _split_list_train(tmp: Path, data: bytes) -> list[str]:
    """The list read for training, which checks that its images exist."""
    args = _split_list(tmp, data)
    return [
        "train",
        *args[1:],
        "data.subset_rule=none",
        "data.loader=device",
        f"out_dir={tmp / 'runs'}",
    ]


def _corrupt_image(tmp: Path, _: bytes) -> list[str]:
    write_image_folder(tmp / "tree", ["a", "b"], [4, 3], size=8, n_test_per_class=1)
    next((tmp / "tree" / "train" / "b").iterdir()).write_bytes(b"not a png")
    return ["train", "recipes/demo.yaml", "data.dataset=imagefolder", f"data.root={tmp / 'tree'}",
            "data.cache_dir=null", "data.subset_rule=none", f"out_dir={tmp / 'runs'}"]  # fmt: skip


def _in_run(name: str, data: bytes, command: str) -> object:
    def case(tmp: Path, run: Path) -> list[str]:
        (run / name).write_bytes(data)
        if command == "predict":
            (tmp / "x.png").write_bytes(b"")  # never reached: the run's files are read first
            return ["predict", str(run), str(tmp / "x.png")]
        return [command, str(run)]

    return case


BAD_FILES = {
    "recipe-latin-1": (_recipe, b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9)"),
    "recipe-not-yaml": (_recipe, b"train: {epochs: 2\n", "is not valid YAML at line 2"),
    "recipe-a-list": (_recipe, b"- 1\n- 2\n", "must be a mapping of keys"),
    "recipe-duplicate-key": (
        _recipe,
        b"train: {epochs: 2}\ntrain: {epochs: 3}\n",
        "key 'train' appears twice (lines 1 and 2)",
    ),
    "recipe-unknown-key": (_recipe, b"trian: {epochs: 2}\n", "unknown config key 'trian'"),
    "recipe-bad-type": (_recipe, b"train: {epochs: many}\n", "bad value for 'train.epochs'"),
    "recipe-binary": (_recipe, bytes(range(256)), "is not UTF-8 text"),
    "list-latin-1": (_split_list, b"caf\xe9.png 0\n", "train.txt:1: not UTF-8 text"),
    "list-duplicate-line": (
        _split_list,
        b"a.png 0\nb.png 1\na.png 0\n",
        "train.txt:3: a.png is listed again (first at line 1)",
    ),
    "list-three-fields": (
        _split_list,
        b"a.png 0 extra\n",
        "train.txt:1: expected 'relative/path label', got 3 fields",
    ),
    "list-label-not-int": (
        _split_list,
        b"a.png cat\n",
        "train.txt:1: label 'cat' is not an integer",
    ),
    "list-negative-label": (_split_list, b"a.png -1\n", "train.txt:1: label -1 is negative"),
    "list-empty": (_split_list, b"\n\n", "lists no images"),
    "list-missing-images": (_split_list_train, b"a.png 0\nb.png 1\n", "are missing, the first is"),
    "corrupt-image": (_corrupt_image, b"", "is corrupt or not an image"),
    "checkpoint-garbage": (
        _in_run("checkpoint.pt", b"garbage", "eval"),
        b"",
        "checkpoint.pt (UnpicklingError): start anew",
    ),
    "checkpoint-empty": (_in_run("checkpoint.pt", b"", "eval"), b"", "checkpoint.pt (EOFError)"),
    "run-config-not-yaml": (
        _in_run("config.yaml", b"data: [\n", "eval"),
        b"",
        "config.yaml is not valid YAML",
    ),
    "run-config-a-list": (
        _in_run("config.yaml", b"- 1\n", "export"),
        b"",
        "config.yaml must be a mapping",
    ),
    "preprocess-not-json": (
        _in_run("preprocess.json", b"{", "predict"),
        b"",
        "preprocess.json is not valid JSON",
    ),
    "weights-garbage": (
        _in_run("model.safetensors", b"garbage", "predict"),
        b"",
        "model.safetensors is unreadable",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_one_line_and_leaves_everything_else_untouched(
    case: str, run: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    make, data, expected = BAD_FILES[case]
    if make in (_recipe, _split_list, _split_list_train, _corrupt_image):
        assert expected in _one_line_error(capsys, main(make(tmp_path, data)))  # type: ignore[operator]
        assert not (tmp_path / "runs").exists()
        return
    import shutil

    copy = tmp_path_factory.mktemp("copy") / "run"
    shutil.copytree(run, copy)
    args = make(tmp_path, copy)  # type: ignore[operator]
    before = _fingerprint(copy)
    assert expected in _one_line_error(capsys, main(args))
    assert _fingerprint(copy) == before  # nothing else in the folder changed

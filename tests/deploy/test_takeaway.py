"""A finished run's model to take away: model.safetensors, preprocess.json, longtail predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from data.fixtures import write_idx
from longtail.cli import main
from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.deploy.model_files import MODEL, PREPROCESS
from longtail.deploy.predict import predict_files
from longtail.errors import LongtailError
from longtail.train.build import build_model
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import train
from tiny_runs import tiny_run

pytestmark = pytest.mark.xdist_group("predict")  # the runs are trained once, on one worker
RUNS = {
    "plain": [],
    "tau_norm": ["eval.tau_norm=1.0"],
    "posthoc": ["eval.posthoc_tau=1.0"],
    "channels_last": ["train.channels_last=true"],
}


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict_idx")
    write_idx(root, n_train_per_class=30, n_test_per_class=6)
    return root


def _overrides(idx_root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_run(idx_root, "train.epochs=2", "probe.enabled=false", f"out_dir={out}", *extra)


@pytest.fixture(scope="module")
def runs(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("predict_runs")
    return {k: train(load_config(None, _overrides(idx_root, out / k, *v))) for k, v in RUNS.items()}


@pytest.fixture(scope="module")
def test_folder(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's test split as lossless PNGs in class folders (``<class>/<i>.png``)."""
    cfg = load_config(None, tiny_run(idx_root))
    data = prepare_data(cfg.data, torch.device("cpu"))
    folder = tmp_path_factory.mktemp("predict_images")
    for i, (image, label) in enumerate(zip(data.test_images, data.test_labels, strict=True)):
        name = data.classes[int(label)].replace("/", "_")
        (folder / name).mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(folder / name / f"{i:04d}.png")
    return folder


def _top1(records: list[dict[str, object]], folder: Path) -> float:
    hits = [r["top"][0]["class"].replace("/", "_") == Path(str(r["path"])).parent.name  # type: ignore[index]
            for r in records]  # fmt: skip
    return 100.0 * sum(hits) / len(hits)


@pytest.mark.parametrize("kind", list(RUNS))
def test_predict_on_the_test_images_gives_evals_top1(
    runs: dict[str, Path], test_folder: Path, kind: str
) -> None:
    run = runs[kind]
    records = predict_files(run, test_folder, topk=3)
    final = json.loads((run / "final.json").read_text())
    assert len(records) == 60 and all(len(r["top"]) == 3 for r in records)
    assert _top1(records, test_folder) == pytest.approx(final["top1"], abs=1e-6)
    assert _top1(records, test_folder) == pytest.approx(evaluate_run(run)["top1"], abs=1e-6)
    for r in records:
        probs = [t["probability"] for t in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 <= sum(probs) <= 1 + 1e-5


def test_the_weights_are_the_checkpoints_model_contiguous_and_named_as_built(
    runs: dict[str, Path], idx_root: Path
) -> None:
    run = runs["channels_last"]
    weights = load_file(str(run / MODEL))
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)["model"]
    assert weights.keys() == checkpoint.keys() and "fc.weight" in weights
    assert all(torch.equal(weights[k], checkpoint[k].cpu()) for k in weights)
    assert all(v.is_contiguous() for v in weights.values())
    cfg = load_config(run / "config.yaml")
    data = prepare_data(cfg.data, torch.device("cpu"))
    build_model(cfg, data, torch.device("cpu")).load_state_dict(weights)  # the documented names


def test_preprocess_json_says_how_to_feed_the_model(runs: dict[str, Path]) -> None:
    record = json.loads((runs["plain"] / PREPROCESS).read_text())
    final = json.loads((runs["plain"] / "final.json").read_text())
    assert record["classes"] == final["classes"] and record["train_counts"] == final["train_counts"]
    assert record["channels"] == 1 and record["image_size"] == 28 and record["resize"] is None
    assert record["model"] == {"name": "resnet20", "classifier": "linear", "kwargs": {"width": 0.25},
                               "strategy": "supervised", "num_classes": 10, "in_chans": 1}  # fmt: skip
    assert len(record["mean"]) == len(record["std"]) == 1 and record["classifier_trained"]
    for kind, want in (("tau_norm", (1.0, None)), ("posthoc", (None, 1.0))):
        got = json.loads((runs[kind] / PREPROCESS).read_text())["eval"]
        assert (got["tau_norm"], got["posthoc_tau"]) == want


def test_the_cli_prints_top_k_lines_or_json(
    runs: dict[str, Path], test_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sorted(test_folder.rglob("*.png"))[0]
    assert main(["predict", str(runs["plain"]), str(image), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}  ") and line.count(" | ") == 1
    assert main(["predict", str(runs["plain"]), str(test_folder), "--json", "--topk", "20"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 60 and all(len(r["top"]) == 10 for r in records)  # k <= classes


def test_a_bigger_or_colour_image_is_sized_and_converted_as_the_run_expects(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    big = tmp_path / "big.jpg"
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8), "RGB").save(big)
    (record,) = predict_files(runs["plain"], big, topk=1)
    assert (
        record["top"][0]["class"] in json.loads((runs["plain"] / PREPROCESS).read_text())["classes"]
    )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.png", "does not exist: give an image file or a folder"),
        ("empty", "holds no images"),
        ("corrupt.png", "is corrupt or not an image"),
    ],
)
def test_bad_images_are_one_line(
    runs: dict[str, Path], tmp_path: Path, target: str, message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    assert main(["predict", str(runs["plain"]), str(tmp_path / target)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_run_without_model_files_says_how_to_write_them(
    runs: dict[str, Path], test_folder: Path, tmp_path: Path
) -> None:
    import shutil

    old = tmp_path / "old-run"
    shutil.copytree(runs["plain"], old)
    (old / MODEL).unlink()
    (old / PREPROCESS).unlink()
    with pytest.raises(LongtailError, match=f"longtail eval {old}"):
        predict_files(old, test_folder)
    evaluate_run(old)  # writes them from the checkpoint
    assert _top1(predict_files(old, test_folder), test_folder) == pytest.approx(
        json.loads((old / "final.json").read_text())["top1"], abs=1e-6
    )
    (old / MODEL).write_bytes(b"garbage")
    with pytest.raises(LongtailError, match="model.safetensors is unreadable"):
        predict_files(old, test_folder)


def test_a_representation_run_has_no_classifier_to_predict_with(
    idx_root: Path, tmp_path: Path, test_folder: Path
) -> None:
    from ssl_helpers import ssl_run

    run = train(load_config(None, ssl_run(idx_root, tmp_path, "strategy.name=simsiam",
                                          "train.epochs=1", "probe.enabled=false")))  # fmt: skip
    assert (run / MODEL).is_file()  # its weights are still there to take away
    with pytest.raises(LongtailError, match="representation-learning run .*never trained"):
        predict_files(run, test_folder)


@pytest.mark.parametrize("kind", list(RUNS))
def test_the_exported_program_equals_eager_and_predicts_evals_top1(
    runs: dict[str, Path], test_folder: Path, kind: str
) -> None:
    from longtail.deploy.export import Uint8Classifier, export_run
    from longtail.deploy.predict import image_files, load_predictor

    run = runs[kind]
    summary = export_run(run, "pt2")  # ONNX: its own test below
    program = torch.export.load(str(run / "model.pt2")).module()
    predictor = load_predictor(run)
    paths = image_files(test_folder)
    images = torch.from_numpy(np.stack([predictor.load_image(p) for p in paths]))
    record = predictor.record
    eager = Uint8Classifier(predictor.model, record["mean"], record["std"], 1).eval()
    with torch.no_grad():
        got, want = program(images), eager(images)
        one = program(images[:1])  # any batch size
    assert summary["max_abs_diff"] <= 1e-4 * summary["logit_scale"]
    assert torch.allclose(got, want, rtol=0, atol=1e-4 * max(float(want.abs().max()), 1.0))
    assert torch.allclose(one, got[:1], rtol=0, atol=1e-4 * max(float(want.abs().max()), 1.0))
    names = [record["classes"][i].replace("/", "_") for i in got.argmax(dim=1).tolist()]
    top1 = 100.0 * sum(n == p.parent.name for n, p in zip(names, paths, strict=True)) / len(paths)
    assert top1 == pytest.approx(json.loads((run / "final.json").read_text())["top1"], abs=1e-6)


def test_export_on_the_command_line_prints_its_summary(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(runs["plain"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (
        summary["input"] == "uint8 [B, 1, 28, 28]" and summary["output"] == "float32 logits [B, 10]"
    )
    assert summary["onnx"].endswith("model.onnx") and (runs["plain"] / "model.onnx").is_file()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["export"], "longtail export: the following arguments are required: RUN_DIR: use"),
        (["export", "a", "b"], "unrecognized arguments: b"),
        (["export", "a", "--format", "tflite"], "invalid choice: 'tflite'"),
        (["predict", "a"], "the following arguments are required: IMAGE|FOLDER"),
        (["predict", "a", "b", "--topk", "many"], "argument --topk: invalid int value: 'many'"),
        (["queue"], "longtail queue: the following arguments are required: action"),
        (["queue", "run", "q.yaml"], "longtail queue run: the following arguments are required"),
    ],
)
def test_a_bad_argument_is_one_line_with_the_usage(
    args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert f"use 'longtail {args[0]}" in lines[0]


def test_the_onnx_graph_equals_eager_in_onnxruntime(
    runs: dict[str, Path], test_folder: Path
) -> None:
    """model.onnx (uint8 images in, logits out) gives eager's logits and eval's top-1."""
    import onnxruntime

    from longtail.deploy.export import Uint8Classifier, export_run
    from longtail.deploy.predict import image_files, load_predictor

    run = runs["tau_norm"]
    summary = export_run(run, "onnx")
    assert "program" not in summary  # --format onnx: the ONNX graph only
    session = onnxruntime.InferenceSession(str(run / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == ["images"]
    predictor = load_predictor(run)
    paths = image_files(test_folder)
    images = torch.from_numpy(np.stack([predictor.load_image(p) for p in paths]))
    record = predictor.record
    eager = Uint8Classifier(predictor.model, record["mean"], record["std"], 1).eval()
    got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    with torch.no_grad():
        want = eager(images)
    scale = max(float(want.abs().max()), 1.0)
    assert summary["onnx_max_abs_diff"] <= 1e-4 * scale
    assert torch.allclose(got, want, rtol=0, atol=1e-4 * scale)
    names = [record["classes"][i].replace("/", "_") for i in got.argmax(dim=1).tolist()]
    top1 = 100.0 * sum(n == p.parent.name for n, p in zip(names, paths, strict=True)) / len(paths)
    assert top1 == pytest.approx(json.loads((run / "final.json").read_text())["top1"], abs=1e-6)


def test_without_the_onnx_packages_both_writes_pt2_and_says_why(
    runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    import longtail.deploy.export as export

    run = tmp_path / "run"
    shutil.copytree(runs["plain"], run)
    for name in ("model.pt2", "model.onnx"):
        (run / name).unlink(missing_ok=True)
    monkeypatch.setattr(export, "missing_packages", lambda: ["onnxscript"])
    summary = export.export_run(run)
    assert (run / "model.pt2").is_file() and not (run / "model.onnx").exists()
    assert summary["onnx"] == (
        "not written (onnxscript missing): pip install onnx onnxscript onnxruntime"
    )
    import longtail.deploy.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "missing_packages", lambda: ["onnxscript"])
    with pytest.raises(LongtailError, match="ONNX export needs onnxscript: pip install onnx"):
        export.export_run(run, "onnx")

"""Decoupling (Kang et al. 2020): cRT, LWS, tau-norm, and stages started from another run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from longtail.cli import main
from longtail.config import load_config
from longtail.data.augment import normalize
from longtail.data.registry import dataset_stats
from longtail.data.setup import prepare_data
from longtail.data.source import DataSource
from longtail.data.subset import validation_indices
from longtail.errors import LongtailError
from longtail.models import create_model
from longtail.strategies.decoupling import LearnableWeightScaling, TauNormalized, check_frozen
from longtail.strategies.registry import get_method
from longtail.train.build import build_training
from longtail.train.evaluate_run import evaluate_run, taunorm_run
from longtail.train.trainer import resume, train
from tiny_runs import tiny_run


def test_lws_multiplies_each_logit_by_its_class_scale() -> None:
    torch.manual_seed(0)
    head = torch.nn.Linear(5, 3)
    lws = LearnableWeightScaling(head, 3)
    x = torch.randn(4, 5)
    assert torch.equal(lws(x), head(x))  # scales start at 1
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([0.5, 2.0, -1.0]))
    expected = torch.stack(
        [torch.stack([lws.scales[c] * (head.weight[c] @ x[b] + head.bias[c]) for c in range(3)])
         for b in range(4)]
    )  # fmt: skip
    assert torch.allclose(lws(x), expected, atol=1e-6)


def test_tau_norm_matches_the_formula_and_tau_0_is_the_plain_model() -> None:
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=4, in_chans=1, width=0.25).eval()
    with torch.no_grad():
        net.fc.weight.mul_(torch.tensor([[3.0], [1.0], [0.5], [0.1]]))  # unequal row norms
    x = torch.randn(3, 1, 12, 12)
    pooled = net.forward_head(net.forward_features(x), pre_logits=True)
    plain_without_bias = net(x) - net.fc.bias
    assert torch.allclose(TauNormalized(net, 0.0)(x), plain_without_bias, atol=1e-5)
    for tau in (0.7, 1.0, 2.0):
        w = net.fc.weight
        expected = torch.stack(
            [torch.stack([pooled[b] @ w[c] / w[c].norm() ** tau for c in range(4)])
             for b in range(3)]
        )  # fmt: skip
        assert torch.allclose(TauNormalized(net, tau)(x), expected, atol=1e-5)
    cosine = create_model("resnet20", num_classes=4, in_chans=1, width=0.25, classifier="cosine")
    with pytest.raises(LongtailError, match="linear classifier"):
        TauNormalized(cosine, 1.0)


def test_validation_indices_are_balanced_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(3), [10, 8, 12])
    used = np.array([0, 1, 2, 3, 10, 11, 12, 13, 14, 20])  # spare: 6, 3, 11
    val = validation_indices(labels, used, 3, per_class=50, seed=1)
    assert np.bincount(labels[val], minlength=3).tolist() == [3, 3, 3]  # the fewest spare
    assert not set(val.tolist()) & set(used.tolist())
    assert np.array_equal(val, validation_indices(labels, used, 3, per_class=50, seed=1))
    assert np.bincount(labels[validation_indices(labels, used, 3, 2, 0)]).tolist() == [2, 2, 2]
    with pytest.raises(LongtailError, match="class 1 has no training images outside"):
        validation_indices(labels, np.arange(10, 18), 3, per_class=5, seed=0)


def _overrides(idx_root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_run(
        idx_root,
        "data.n_max=30",  # 10 spare images per class for the validation split
        "schedule.warmup_epochs=0",
        f"out_dir={out}",
        *extra,
    )


CRT = [
    "strategy.name=decoupled",
    "init.freeze=backbone",
    "init.reset_classifier=true",
    "train.sampler=class_balanced",
]
LWS = ["strategy.name=decoupled", "init.freeze=all_but_scales", "train.sampler=class_balanced"]


@pytest.fixture(scope="module")
def stage1(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    return train(load_config(None, _overrides(idx_root, out, "train.epochs=2")))


@pytest.fixture(scope="module")
def hybrid_stage1(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hybrid1")
    extra = ["strategy.name=hybrid", "strategy.proj_hidden=16", "strategy.proj_dim=8"]
    return train(load_config(None, _overrides(idx_root, out, "train.epochs=1", *extra)))


def _model(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]  # type: ignore[no-any-return]


def _stage2(idx_root: Path, out: Path, source: Path, *extra: str) -> Path:
    cfg = load_config(None, _overrides(idx_root, out, f"init.run={source}", *extra))
    return train(cfg)


def test_crt_keeps_the_backbone_bit_identical(idx_root: Path, stage1: Path, tmp_path: Path) -> None:
    crt = _stage2(idx_root, tmp_path, stage1, "train.epochs=2", *CRT)
    before, after = _model(stage1), _model(crt)
    backbone = [k for k in before if not k.startswith("fc.")]
    assert any("running_mean" in k for k in backbone) and any("num_batches" in k for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone)  # params and BN buffers
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert json.loads((crt / "final.json").read_text())["frozen_tensors_unchanged"] == len(backbone)
    subset = [json.loads((r / "lt_index.json").read_text())["indices"] for r in (stage1, crt)]
    assert subset[0] == subset[1]  # trained on the source's images


def test_lws_changes_only_the_scales(idx_root: Path, stage1: Path, tmp_path: Path) -> None:
    lws = _stage2(idx_root, tmp_path, stage1, "train.epochs=1", "optim.lr=0.5", *LWS)
    before, after = _model(stage1), _model(lws)
    renamed = {
        ("fc.classifier." + k[3:] if k.startswith("fc.") else k): v for k, v in before.items()
    }
    assert set(after) == set(renamed) | {"fc.scales"}
    assert all(torch.equal(renamed[k], after[k]) for k in renamed)
    assert not torch.equal(after["fc.scales"], torch.ones(10))
    assert evaluate_run(lws)["top1"] == json.loads((lws / "final.json").read_text())["top1"]


def test_frozen_parts_stay_in_eval_and_out_of_the_optimizer(
    idx_root: Path, stage1: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, _overrides(idx_root, tmp_path, f"init.run={stage1}", *CRT))
    cfg.data.index_file = str(stage1 / "lt_index.json")
    data = prepare_data(cfg.data, torch.device("cpu"))
    parts = build_training(cfg, data, torch.device("cpu"))
    model = parts.model
    model.train()  # what the loop does each epoch
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and model.fc.training
    optimised = {id(p) for g in parts.optimizer.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.fc.parameters()}
    assert parts.frozen is not None
    check_frozen(model, parts.frozen)  # nothing moved yet
    torch.nn.Module.train(model, True)  # a broken freeze: BN back in training mode ...
    parts.step(next(iter(parts.loader)), 0.1)  # ... updates its running statistics
    with pytest.raises(LongtailError, match="frozen tensors changed"):
        check_frozen(model, parts.frozen)


def test_crt_from_a_hybrid_run_uses_its_backbone(
    idx_root: Path, hybrid_stage1: Path, tmp_path: Path
) -> None:
    crt = _stage2(idx_root, tmp_path, hybrid_stage1, "train.epochs=1", *CRT)
    source, after = _model(hybrid_stage1), _model(crt)
    backbone = {k[len("backbone.") :]: v for k, v in source.items() if k.startswith("backbone.")}
    assert set(backbone) == set(after)
    assert all(torch.equal(backbone[k], after[k]) for k in backbone if not k.startswith("fc."))


def test_bad_init_run_is_one_line(idx_root: Path, stage1: Path, tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="is not a run folder") as missing:
        _stage2(idx_root, tmp_path, tmp_path / "nope", *CRT)
    other = _overrides(idx_root, tmp_path, f"init.run={stage1}", "model.kwargs.width=0.5", *CRT)
    with pytest.raises(LongtailError, match="set model") as wrong:
        train(load_config(None, other))
    with pytest.raises(LongtailError, match="init.run=RUN_DIR") as needed:
        train(load_config(None, _overrides(idx_root, tmp_path, *CRT)))
    for err in (missing, wrong, needed):
        assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("*/config.yaml"))  # nothing left behind


def test_the_stage_is_the_decoupled_method_and_needs_a_freeze(
    idx_root: Path, tmp_path: Path
) -> None:
    """cRT / LWS are ``strategy.name=decoupled`` (listed, registered); without init.freeze it is a
    one-line error, and a freeze under another method names the method to use."""
    assert get_method("decoupled").restages and not get_method("supervised").restages
    plain = _overrides(idx_root, tmp_path, "strategy.name=decoupled")
    with pytest.raises(LongtailError, match="set init.freeze=backbone") as bare:
        load_config(None, plain)
    with pytest.raises(LongtailError, match="set strategy.name=decoupled") as other:
        load_config(None, _overrides(idx_root, tmp_path, "init.freeze=backbone"))
    for err in (bare, other):
        assert "\n" not in str(err.value)


def test_a_stage_two_folder_written_as_supervised_resumes_and_evaluates(
    idx_root: Path, stage1: Path, tmp_path: Path
) -> None:
    """A cRT folder from before the method was registered says strategy.name=supervised: it
    loads as decoupled, resumes to the same weights as a straight run and evaluates."""
    straight = _stage2(idx_root, tmp_path / "a", stage1, "train.epochs=2", *CRT)
    half = _stage2(idx_root, tmp_path / "b", stage1, "train.epochs=1", *CRT)
    saved = yaml.safe_load((half / "config.yaml").read_text())
    assert saved["strategy"]["name"] == "decoupled"
    saved["strategy"]["name"] = "supervised"  # as the folder was written then
    (half / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resume(half, ["train.epochs=2"])
    a, b = _model(straight), _model(half)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evaluate_run(half)["top1"] == json.loads((half / "final.json").read_text())["top1"]


def test_crt_resume_is_exact(idx_root: Path, stage1: Path, tmp_path: Path) -> None:
    straight = _stage2(idx_root, tmp_path / "a", stage1, "train.epochs=2", *CRT)
    half = _stage2(idx_root, tmp_path / "b", stage1, "train.epochs=1", *CRT)
    resume(half, ["train.epochs=2"])
    a, b = _model(straight), _model(half)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_taunorm_picks_tau_on_validation(
    idx_root: Path, stage1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = taunorm_run(stage1, taus=[0.0, 0.5, 1.0, 1.5])
    curve = result["sweep"]["val_top1"]
    assert result["tau"] == [0.0, 0.5, 1.0, 1.5][curve.index(max(curve))]
    val = result["val_indices"]
    lt = json.loads((stage1 / "lt_index.json").read_text())["indices"]
    assert result["val_per_class"] == 10 and len(val) == 100  # 40 - 30 spare images per class
    assert not set(val) & set(lt)  # never a training image; the test split is a separate file
    # the sweep's validation accuracy at tau = 1, recomputed from the formula
    cfg = load_config(None, _overrides(idx_root, Path("unused")))
    full = DataSource.of(cfg.data).arrays("train")
    labels = torch.as_tensor(full.labels[val])
    assert torch.bincount(labels, minlength=10).tolist() == [10] * 10
    images = torch.as_tensor(full.images[val]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    mean, std = dataset_stats(full)  # the run normalises by the full training split's stats
    net = create_model("resnet20", num_classes=10, in_chans=1, width=0.25)
    net.load_state_dict(_model(stage1))
    net.eval()
    with torch.no_grad():
        pooled = net.forward_head(
            net.forward_features(normalize(images, list(mean), list(std))), pre_logits=True
        )
        w = net.fc.weight / net.fc.weight.norm(dim=1, keepdim=True)
        acc = (F.linear(pooled, w).argmax(1) == labels).double().mean().item() * 100
    assert curve[2] == pytest.approx(acc, abs=1e-6)
    at_tau = evaluate_run(stage1, [f"eval.tau_norm={result['tau']}"])
    assert at_tau["top1"] == result["test"]["top1"]
    assert main(["taunorm", str(stage1)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tau"] == json.loads((stage1 / "taunorm.json").read_text())["tau"]

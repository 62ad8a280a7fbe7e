"""The method registry: names, each method's own config section, and run folders written before it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml

from longtail.config import Config, choices, from_dict, load_config, to_dict
from longtail.errors import LongtailError
from longtail.strategies.base import Method, MethodConfig
from longtail.strategies.hybrid import HybridConfig
from longtail.strategies.kcl import KCLConfig
from longtail.strategies.registry import get_method, methods, register
from longtail.train.evaluate_run import evaluate_run
from longtail.train.trainer import resume, train
from tiny_runs import tiny_run

# strategy.* as every config.yaml held it before methods owned their sections (the 18 keys of the
# one StrategyConfig, at its defaults)
OLD_SECTION = {
    "name": "supervised",
    "contrastive": "supcon",
    "temperature": 0.1,
    "num_prototypes": 2,
    "positives": None,
    "proj_hidden": 512,
    "proj_dim": 128,
    "proj_batch_norm": False,
    "curriculum": "parabolic",
    "fixed_alpha": 0.5,
    "batch_norm": "joint",
    "ce_sampler": "class_balanced",
    "contrastive_sampler": "random",
    "jitter_views": [False, True],
    "k": 6,
    "queue_size": 4096,
    "key_momentum": 0.999,
    "proj_layers": 2,
    "pred_hidden": 512,
}


def test_every_method_is_registered_under_its_config_name() -> None:
    registered = methods()
    assert list(registered)[0] == "supervised"
    assert set(registered) >= {"supervised", "hybrid", "kcl", "moco", "simclr", "supcon", "simsiam"}
    for name, method in registered.items():
        assert issubclass(method, Method) and method.name() == name
        assert method.config_class().name == name or method.config_class is MethodConfig
        assert method.summary, name  # `longtail list methods` says what each one is
    assert choices()["strategy.name"] == tuple(registered)


def test_a_second_method_of_one_name_is_refused() -> None:
    class Impostor(Method):
        config_class = HybridConfig

    with pytest.raises(LongtailError, match="registered twice"):
        register(Impostor)
    assert get_method("hybrid") is not Impostor


def test_the_name_picks_the_section_dataclass() -> None:
    assert type(load_config(None, []).strategy) is MethodConfig
    cfg = load_config(None, ["strategy.name=kcl", "strategy.k=3"])
    assert isinstance(cfg.strategy, KCLConfig) and cfg.strategy.k == 3
    # the last name given wins, and its section's defaults fill the rest
    cfg = load_config(None, ["strategy={name: kcl}", "strategy.name=hybrid"])
    assert isinstance(cfg.strategy, HybridConfig) and cfg.strategy.curriculum == "parabolic"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["strategy.name=byol"], r"strategy.name='byol' is not one of supervised, "),
        (["strategy.k=3"], r"'strategy.k' .* not a key of strategy.name=supervised \(kcl has it\)"),
        (
            ["strategy.name=simclr", "strategy.queue_size=64"],
            r"not a key of strategy.name=simclr \(kcl, moco have it\)",
        ),
        (
            ["strategy.name=hybrid", "strategy.contrastiv=psc"],
            "did you mean 'strategy.contrastive'",
        ),
        (["strategy.name=hybrid", "strategy.contrastive=byol"], "strategy.contrastive='byol'"),
        (["strategy.name=hybrid", "strategy.num_prototypes=0"], "num_prototypes=0 must be >= 1"),
        (
            ["strategy.name=moco", "sam.rho=0.5"],
            "use SAM with supervised, decoupled, simclr, simsiam, supcon",
        ),
        (["strategy.name=hybrid", "init.freeze=backbone"], "set strategy.name=decoupled"),
    ],
)
def test_method_errors_are_one_line(overrides: list[str], match: str) -> None:
    with pytest.raises(LongtailError, match=match) as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


def test_a_saved_config_of_before_the_registry_loads() -> None:
    for name, kind in (("supervised", MethodConfig), ("hybrid", HybridConfig), ("kcl", KCLConfig)):
        tree = to_dict(Config()) | {"strategy": OLD_SECTION | {"name": name, "temperature": 0.07}}
        cfg = from_dict(tree)
        assert type(cfg.strategy) is kind
        if kind is not MethodConfig:
            assert cfg.strategy.temperature == 0.07  # type: ignore[attr-defined]
    kcl = from_dict(to_dict(Config()) | {"strategy": OLD_SECTION | {"name": "kcl", "k": 2}})
    assert isinstance(kcl.strategy, KCLConfig) and kcl.strategy.k == 2
    assert {f.name for f in fields(kcl.strategy)} < set(OLD_SECTION)


@pytest.mark.parametrize("name", ["supervised", "hybrid"])
def test_a_run_folder_of_before_the_registry_resumes_and_evaluates(
    idx_root: Path, tmp_path: Path, name: str
) -> None:
    extra = [f"strategy.name={name}"]
    if name == "hybrid":
        extra += ["strategy.proj_hidden=16", "strategy.proj_dim=8"]
    run = train(
        load_config(
            None,
            tiny_run(idx_root, f"out_dir={tmp_path}", "train.epochs=1",
                     "train.max_steps_per_epoch=2", "probe.enabled=false", *extra),
        )
    )  # fmt: skip
    saved = yaml.safe_load((run / "config.yaml").read_text())
    section = saved["strategy"]
    saved["strategy"] = OLD_SECTION | section  # as the folder would have been written before
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    resume(run, ["train.epochs=2"])
    final = json.loads((run / "final.json").read_text())
    assert final["epochs"] == 2
    assert evaluate_run(run)["top1"] == final["top1"]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("backbone.") for k in state["model"]) == (name == "hybrid")

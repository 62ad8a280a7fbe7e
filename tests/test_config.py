"""Recipe loading: defaults, overrides, and one-line errors for every bad key or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from longtail.config import Config, from_dict, load_config, to_dict
from longtail.errors import LongtailError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_without_recipe() -> None:
    cfg = load_config()
    assert cfg == Config()


def test_recipe_then_overrides_take_precedence(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 0.5\ntrain:\n  epochs: 7\n")
    cfg = load_config(
        recipe, ["optim.lr=0.05", "model.kwargs.stem=cifar", "schedule.milestones=[3,5]"]
    )
    assert cfg.optim.lr == 0.05
    assert cfg.train.epochs == 7
    assert cfg.model.kwargs == {"stem": "cifar"}
    assert cfg.schedule.milestones == [3, 5]


def test_round_trip_through_dict() -> None:
    cfg = load_config(None, ["data.imbalance_ratio=10", "name=x"])
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["optim.lrr=0.1"], "did you mean 'optim.lr'"),
        (["optim.lr=abc"], "bad value for 'optim.lr'"),
        (["data.imbalance_ratio=0.5"], "imbalance_ratio must be >= 1"),
        (["data.imbalance_ratio=nan"], "data.imbalance_ratio=nan must be a finite number"),
        (["optim.lr=.inf"], "optim.lr=inf must be a finite number"),
        (["schedule.warmup_epochs=.nan"], "schedule.warmup_epochs=nan must be a finite"),
        (["optim.weight_decay=.nan"], "optim.weight_decay=nan must be a finite"),
        (["optim.betas=[0.9,.nan]"], "optim.betas=nan must be a finite"),
        (["train.seed=-1"], "train.seed=-1 must be in [0, 2^32)"),
        (["train.seed=4294967296"], "train.seed=4294967296 must be in [0, 2^32)"),
        (["data.subset_seed=-1"], "data.subset_seed=-1 must be in [0, 2^32)"),
        (["optim.momentum=5"], "optim.momentum=5.0 must be in [0, 1)"),
        (["optim.momentum=1.0"], "optim.momentum=1.0 must be in [0, 1)"),
        (["train.sampler=uniform"], "not one of random, class_balanced, sqrt"),
        (["train.epochs=0"], "train.epochs must be > 0"),
        (["train.epochs=2.5"], "bad value for 'train.epochs'"),
        (["optim.lr"], "is not key=value"),
        (["augment.jitter=[0.4,0.4]"], "augment.jitter takes 4 values"),
        (["augment.grayscale_p=1.5"], "probability"),
        (["loss.beta=1.0"], "loss.beta must be in [0, 1)"),
        (["schedule.milestones=[180,160]"], "increasing"),
    ],
)
def test_bad_overrides_give_one_line(overrides: list[str], fragment: str) -> None:
    with pytest.raises(LongtailError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_bad_recipe_files(tmp_path: Path) -> None:
    with pytest.raises(LongtailError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim:\n  lr: [0.1\n")
    with pytest.raises(LongtailError, match="not valid YAML"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(LongtailError, match="mapping"):
        load_config(listed)
    typo = tmp_path / "typo.yaml"
    typo.write_text("data:\n  imbalence_ratio: 10\n")
    with pytest.raises(LongtailError, match="did you mean 'data.imbalance_ratio'"):
        load_config(typo)


@pytest.mark.parametrize(
    "recipe",
    sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "studies" not in p.parts),
    ids=str,
)
def test_every_shipped_recipe_loads(recipe: Path) -> None:
    cfg = load_config(recipe)
    assert cfg.name != "run", "each recipe names its runs"


def test_a_key_given_twice_in_a_recipe_is_refused_with_its_lines(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  epochs: 3\noptim:\n  lr: 0.1\ntrain:\n  batch_size: 8\n")
    with pytest.raises(LongtailError, match=r"key 'train' appears twice \(lines 1 and 5\)"):
        load_config(recipe)
    nested = tmp_path / "n.yaml"
    nested.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(LongtailError, match=r"key 'lr' appears twice \(lines 2 and 3\)"):
        load_config(nested)

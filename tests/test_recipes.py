"""Every shipped recipe trains two steps, in-process, on a few hundred of its real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longtail.config import load_config
from longtail.train.trainer import train
from shared_data import REPO, require_fashion_mnist, require_shared

LARGE_SCALE = (
    "imagenet_lt",
    "inat2018",
    "places_lt",
)  # no images here: test_large_scale_recipes.py
RECIPES = sorted(
    p
    for p in (REPO / "recipes").rglob("*.yaml")
    if "studies" not in p.parts and not set(LARGE_SCALE) & set(p.parts)
)
# A few hundred images, but every class needs >= 1: 100 classes at r=100 need ~1,500 (n_min 1).
SMOKE_TOTAL = {"cifar100": 2000}


def _require_data(root: str) -> None:
    path = (REPO / root).resolve()
    if path == (REPO / "data" / "fashion-mnist").resolve():
        require_fashion_mnist()
    elif "shared/data/" in str(path):
        require_shared(str(path).split("shared/data/", 1)[1])


def _needs_source(recipe: Path) -> bool:
    """Stage-2 recipes (cRT, LWS, TwoStage-SC stage 2) start from another run: init.run=RUN_DIR."""
    init = load_config(recipe).init  # resolved: a base: recipe may hold the stage's keys
    return init.freeze != "none" or init.reset_classifier


@pytest.fixture(scope="session")
def decode_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One decoded-array cache per test session (per xdist worker): each dataset decodes once."""
    return tmp_path_factory.mktemp("decode_cache")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_smoke(
    recipe: Path, tmp_path: Path, decode_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # recipes name data relative to the repository root
    # a stage-2 recipe needs init.run only to train: its data and paper fields load without it
    unstaged = ["init.freeze=none", "init.reset_classifier=false"] if _needs_source(recipe) else []
    cfg = load_config(recipe, unstaged)
    _require_data(cfg.data.root)
    total = SMOKE_TOTAL.get(cfg.data.dataset, 300)
    small = [
        f"data.total={total}",  # the recipe's own ratio and profile, a few hundred images
        "data.test_limit=200",
        f"data.cache_dir={decode_cache}",
        "train.epochs=1",
        "train.max_steps_per_epoch=2",
        "train.batch_size=32",
        "train.progress=false",
        "probe.balanced_per_class=5",  # the end-of-run probes on a few images of each class
        "probe.iterations=5",
        f"out_dir={tmp_path}",
    ]
    if unstaged:  # a tiny stage 1 of the same model and data stands in for the source run
        source = train(load_config(recipe, [*small, *unstaged, f"out_dir={tmp_path / 'stage1'}"]))
        small.append(f"init.run={source}")
    small_cfg = load_config(recipe, small)
    run = train(small_cfg)
    final = json.loads((run / "final.json").read_text())
    assert sum(final["train_counts"]) == total
    assert max(final["train_counts"]) / min(final["train_counts"]) == pytest.approx(
        cfg.data.imbalance_ratio, rel=0.5
    )
    assert final["paper_top1"] == cfg.paper.top1


def test_taunorm_runs_on_a_shipped_cifar_lt_recipe(
    tmp_path: Path, decode_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tau is chosen on training images outside the long-tailed subset (50 a class, seeded):
    CIFAR-LT publishes no validation split, and the subset leaves most training images unused."""
    from longtail.train.evaluate_run import taunorm_run

    monkeypatch.chdir(REPO)
    recipe = REPO / "recipes" / "cifar10_lt" / "ce_r100.yaml"
    _require_data(load_config(recipe).data.root)
    small = ["data.total=300", "data.test_limit=200", f"data.cache_dir={decode_cache}",
             "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=32",
             "train.progress=false", "probe.enabled=false", f"out_dir={tmp_path}"]  # fmt: skip
    run = train(load_config(recipe, small))
    result = taunorm_run(run)
    assert result["val_source"] == "training images outside the long-tailed subset"
    assert result["val_per_class"] == 50
    indices = set(result["val_indices"])
    subset = set(json.loads((run / "lt_index.json").read_text())["indices"])
    assert len(indices) == 500 and not indices & subset

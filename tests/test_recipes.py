"""Every shipped recipe trains two steps, in-process, on a few hundred of its real images.

Recipes that are one table row at several imbalance ratios (``ce_r10``, ``ce_r50``, ``ce_r100``) are
one family: its r=100 member trains, and every other member is checked to be that recipe with
only its ratio, paper number and names changed, and to draw its own long-tailed subset.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from longtail.config import ProbeConfig, load_config
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
RATIO = re.compile(r"_r\d+(?=_|$)")  # ce_r100 -> ce, two_stage_sc_r10_stage2 -> two_stage_sc_stage2
ROW_KEYS = (
    "name",
    "method",
    "recipe",
    "paper",
)  # what a family's members may change, beside the ratio


def _family(recipe: Path) -> tuple[Path, str]:
    return recipe.parent, RATIO.sub("", recipe.stem)


def _trained(recipe: Path) -> Path:
    """The member of ``recipe``'s family that trains: r=100 when there is one, else the first."""
    members = [r for r in RECIPES if _family(r) == _family(recipe)]
    return next((r for r in members if RATIO.search(r.stem) and "_r100" in r.stem), members[0])


TRAINED = [r for r in RECIPES if _trained(r) == r]
# The default probe is one code path, smoked on each CIFAR source and one representation run; a
# recipe with its own probe settings is smoked with them.
PROBED = {
    REPO / f"recipes/{r}.yaml" for r in ("cifar10_lt/ce_r100", "cifar100_lt/ce_r100", "ssl/simsiam")
}
CHECKED = [r for r in RECIPES if _trained(r) != r]


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


@pytest.mark.parametrize("recipe", TRAINED, ids=lambda p: str(p.relative_to(REPO)))
def test_recipe_smoke(
    recipe: Path, tmp_path: Path, decode_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # recipes name data relative to the repository root
    # a stage-2 recipe needs init.run only to train: its data and paper fields load without it
    unstaged = (
        ["strategy.name=supervised", "init.freeze=none", "init.reset_classifier=false"]
        if _needs_source(recipe)
        else []
    )
    cfg = load_config(recipe, unstaged)
    _require_data(cfg.data.root)
    total = SMOKE_TOTAL.get(cfg.data.dataset, 300)
    probed = recipe in PROBED or cfg.probe != ProbeConfig()
    small = [
        *([] if probed else ["probe.enabled=false"]),
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
    assert ("probe" in final) == probed


def _row_free(recipe: Path) -> dict[str, Any]:
    cfg = load_config(recipe)
    tree = {k: v for k, v in cfg.__dict__.items() if k not in ROW_KEYS}
    return {**tree, "data": {**cfg.data.__dict__, "imbalance_ratio": None}}


@pytest.mark.parametrize("recipe", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_a_family_member_is_its_trained_recipe_at_its_own_ratio(
    recipe: Path, decode_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from longtail.data.setup import describe_subset

    monkeypatch.chdir(REPO)
    trained = _trained(recipe)
    assert _row_free(recipe) == _row_free(trained), (
        f"{recipe.name} differs from {trained.name} beyond {', '.join(ROW_KEYS)} and the ratio:"
        " give it its own family name so that it trains in test_recipe_smoke"
    )
    cfg, twin = load_config(recipe), load_config(trained)
    assert (cfg.paper.top1 is None) == (
        twin.paper.top1 is None
    ) and cfg.paper.source  # a row's number
    assert (cfg.method is None) == (twin.method is None) and cfg.name != twin.name
    _require_data(cfg.data.root)
    total = SMOKE_TOTAL.get(cfg.data.dataset, 300)
    small = load_config(recipe, [f"data.total={total}", f"data.cache_dir={decode_cache}"])
    counts = describe_subset(small.data)["counts"]
    assert sum(counts) == total
    assert max(counts) / min(counts) == pytest.approx(cfg.data.imbalance_ratio, rel=0.5)


def test_every_family_trains_one_member() -> None:
    assert len(TRAINED) + len(CHECKED) == len(RECIPES) and len(CHECKED) > 20
    assert {_family(r) for r in TRAINED} == {_family(r) for r in RECIPES}
    assert Path(REPO / "recipes/cifar10_lt/ce_r100.yaml") in TRAINED
    assert _trained(REPO / "recipes/cifar100_lt/two_stage_sc_r10_stage2.yaml").stem == (
        "two_stage_sc_r100_stage2"
    )


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

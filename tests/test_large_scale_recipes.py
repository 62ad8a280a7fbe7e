"""Every ImageNet-LT, iNaturalist 2018 and Places-LT recipe trains two steps on a synthetic tree.

No images of those sets are here, so each recipe runs on tiny images written at the paths of
synthetic lists in a temporary folder (3 classes), streamed from the files as the recipes stream at
scale, at 32 px instead of 224 so that ResNet-152 steps in seconds. What is checked is that the
recipe's keys, model, strategy and stage fit together; the published lists themselves are counted
in tests/data/test_published_splits.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.fixtures import write_split_list
from longtail.config import load_config
from longtail.train.trainer import train
from shared_data import REPO

RECIPES = sorted(
    p
    for d in ("imagenet_lt", "inat2018", "places_lt")
    for p in (REPO / "recipes" / d).glob("*.yaml")
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides pointing a recipe at a synthetic long-tailed tree with val and test lists."""
    folder = tmp_path_factory.mktemp("large_scale")
    root, train_list, _ = write_split_list(folder, [8, 4, 2], num_classes=3, list_name="t.txt")
    _, val_list, _ = write_split_list(
        folder, 2, num_classes=3, list_name="v.txt", seed=4, folder="val"
    )
    _, test_list, _ = write_split_list(
        folder, 2, num_classes=3, list_name="e.txt", seed=8, folder="test"
    )
    return [f"data.root={root}", f"data.train_list={train_list}", f"data.val_list={val_list}",
            f"data.test_list={test_list}", "data.image_size=32", "data.loader=stream",
            "data.workers=0", "train.epochs=1", "train.max_steps_per_epoch=2",
            "train.batch_size=4", "train.progress=false", "train.device=cpu",
            "eval.batch_size=8"]  # fmt: skip


def test_the_three_sets_have_their_recipes() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert {"imagenet_lt/ce", "imagenet_lt/crt", "imagenet_lt/lws", "imagenet_lt/kcl"} <= names
    assert {f"inat2018/{m}" for m in ("ce", "cb_focal", "ce_drw", "ce_drs", "ldam_drw",
                                      "hybrid_sc", "hybrid_psc")} <= names  # fmt: skip
    assert {"places_lt/ce", "places_lt/crt", "places_lt/lws"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_large_scale_recipe_smoke(recipe: Path, tree: list[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(REPO)
    init = load_config(recipe).init  # resolved: a base: recipe may hold the stage's keys
    staged = init.freeze != "none" or init.reset_classifier
    overrides = [*tree, f"out_dir={tmp_path}"]
    if "resnet152" in recipe.read_text():  # 60 M parameters: 0.5 GB a checkpoint, for 2 steps;
        overrides.append("model.name=resnet50")  # the same bottleneck code, 2.4x fewer weights
    if "queue_size" in recipe.read_text():
        overrides.append("strategy.queue_size=64")  # 65,536 keys of 14 images: the same code path
    if staged:  # a tiny stage 1 of the same model stands in for the source run; at a small lr:
        # two steps at the recipe's (0.2) on 4 images leave weights whose frozen, eval-mode
        # BatchNorm overflows a deep net's features, which a trained stage 1 never does
        unstaged = [
            "strategy.name=supervised",
            "init.freeze=none",
            "init.reset_classifier=false",
            "optim.lr=0.001",
        ]
        source = train(load_config(recipe, [*overrides, *unstaged, f"out_dir={tmp_path / 's1'}"]))
        overrides.append(f"init.run={source}")
    cfg = load_config(recipe, overrides)
    assert cfg.data.subset_rule == "none" and cfg.paper.source
    run = train(cfg)
    final = json.loads((run / "final.json").read_text())
    assert final["train_counts"] == [8, 4, 2]  # the list as given
    assert final["paper_top1"] == cfg.paper.top1

"""protocol.py: when a run is its recipe's full protocol, and when two runs are the same setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from longtail.config import load_config
from longtail.protocol import full_protocol, same_setting, setting, shortened

# the tiny recipe plus an OOD probe, so that every probe cut has something to cut
PROBE_RECIPE = """\
name: tiny-ood
method: CE
data: {{dataset: fashion_mnist, root: {root}, cache_dir: null, imbalance_ratio: 10}}
model: {{name: resnet20, kwargs: {{width: 0.25}}}}
train: {{batch_size: 16, epochs: 4}}
probe: {{balanced_per_class: 20, iterations: 10, ood: mnist, ood_per_class: 10}}
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-ood.yaml"
    path.write_text(PROBE_RECIPE.format(root=tmp_path / "idx"))
    return path


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        (["train.epochs=3"], "train.epochs=3 < the recipe's 4"),
        (["train.max_steps_per_epoch=2"], "train.max_steps_per_epoch=2"),
        (["data.test_limit=10"], "data.test_limit=10"),
        (["probe.enabled=false"], "probe.enabled=false (the recipe probes)"),
        (["probe.balanced_per_class=10"], "probe.balanced_per_class=10 < the recipe's"),
        (["probe.iterations=5"], "probe.iterations=5 < the recipe's 10"),
        (["probe.ood=null"], "no OOD probe (the recipe's probe.ood=mnist)"),
        (["probe.ood_per_class=5"], "probe.ood_per_class=5 < the recipe's"),
        (["probe.long_tailed=false"], "probe.long_tailed=false (the recipe probes the long-tailed set)"),
    ],
)  # fmt: skip
def test_each_cut_is_named(recipe: Path, overrides: list[str], reason: str) -> None:
    """Each way of doing less than the recipe is one reason, found with or without the recipe given."""
    cfg = load_config(recipe, overrides)
    assert shortened(cfg, load_config(recipe)) == [reason]
    assert shortened(cfg) == [reason]  # the recipe re-read from cfg.recipe
    assert not full_protocol(cfg)


def test_cuts_add_up(recipe: Path) -> None:
    """Several cuts: every one is listed."""
    cfg = load_config(recipe, ["train.epochs=1", "data.test_limit=5", "probe.iterations=1"])
    assert len(shortened(cfg)) == 3


def test_recipe_and_neutral_changes_are_full(recipe: Path) -> None:
    """The recipe itself, and a run differing only in keys that do not change its result, are full
    and the same setting; more than the recipe (epochs, a larger probe) is not shortened."""
    base = load_config(recipe)
    neutral = load_config(recipe, [
        "train.seed=3", "train.device=cpu", "train.threads=1", "train.progress=false",
        "eval.every=10", "name=other", "out_dir=/elsewhere", "data.cache_dir=/tmp/cache",
        "train.precision=bf16",
    ])  # fmt: skip
    assert shortened(base) == [] and shortened(neutral) == [] and full_protocol(neutral)
    assert same_setting(base, neutral) and setting(base) == setting(neutral)
    more = load_config(recipe, ["train.epochs=5", "probe.balanced_per_class=null"])
    assert shortened(more) == [] and not same_setting(base, more)


@pytest.mark.parametrize("change", ["optim.lr=0.05", "train.batch_size=32", "data.imbalance_ratio=5",
                                    "loss.name=focal", "data.root=/other"])  # fmt: skip
def test_a_change_that_matters_is_another_setting(recipe: Path, change: str) -> None:
    """What changes the result changes the setting."""
    assert not same_setting(load_config(recipe), load_config(recipe, [change]))


def test_balanced_probe_cap_against_an_uncapped_recipe(recipe: Path, tmp_path: Path) -> None:
    """A cap where the recipe takes every image is fewer; no cap where the recipe caps is not."""
    uncapped = tmp_path / "uncapped.yaml"
    uncapped.write_text(recipe.read_text().replace("balanced_per_class: 20, ", ""))
    capped = load_config(uncapped, ["probe.balanced_per_class=500"])
    assert shortened(capped) == ["probe.balanced_per_class=500 < the recipe's"]
    assert shortened(load_config(recipe, ["probe.balanced_per_class=null"])) == []


def test_gone_recipe_checks_what_needs_no_reference(recipe: Path) -> None:
    """With its recipe file gone, only the cuts visible in the config itself are found."""
    cfg = load_config(recipe, ["train.epochs=1", "train.max_steps_per_epoch=2"])
    recipe.unlink()
    assert shortened(cfg) == ["train.max_steps_per_epoch=2"]
    assert shortened(load_config(None, ["data.test_limit=4"])) == ["data.test_limit=4"]


def test_a_pack_of_the_recipe_is_the_recipe_dataset(recipe: Path, tmp_path: Path) -> None:
    """``data.dataset=pack`` of the recipe's data counts as the recipe's own dataset and root."""
    base = load_config(recipe)
    packed = load_config(recipe, ["data.dataset=pack", f"data.root={tmp_path / 'p.npz'}"])
    tree = setting(packed)
    assert (tree["data"]["dataset"], tree["data"]["root"]) == (
        "fashion_mnist",
        str(tmp_path / "idx"),
    )
    assert same_setting(base, packed) and shortened(packed) == []
    # a pack without a recipe to compare against stays a pack
    loose = load_config(None, ["data.dataset=pack", "data.root=/p.npz"])
    assert setting(loose)["data"]["dataset"] == "pack"
    assert not same_setting(loose, load_config(None))


def test_stage_two_seeds_from_their_own_first_stages_are_one_setting(recipe: Path) -> None:
    """Each seed of a cRT/LWS row starts from its own stage-1 folder (and the subset file in it):
    those do not make the seeds different settings; another subset file does."""

    def stage2(run: str, seed: int, index: str | None = None) -> Any:
        index = index or f"{run}/lt_index.json"
        return load_config(recipe, [f"init.run={run}", f"data.index_file={index}",
                                    f"train.seed={seed}"])  # fmt: skip

    assert same_setting(stage2("/runs/a", 0), stage2("/runs/b", 1))
    assert not same_setting(
        stage2("/runs/a", 0), stage2("/runs/b", 1, index="/other/lt_index.json")
    )

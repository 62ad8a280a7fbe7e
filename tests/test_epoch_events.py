"""Shortened (and lengthened) runs keep their method: epoch-valued keys scale with train.epochs."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.fixtures import write_idx
from longtail.config import load_config
from longtail.epoch_events import scale_to_epochs
from longtail.losses.schedules import drw_weights
from longtail.optim.schedules import lr_factor
from longtail.run_folder import RunFolder
from longtail.train.trainer import resume, train

LDAM_DRW = "recipes/cifar10_lt/ldam_drw_r100.yaml"  # DRW at 160, decays at 160 / 180 of 200


@pytest.mark.parametrize("epochs", [2, 3, 20, 50])
def test_a_shortened_ldam_drw_reaches_drw_and_both_decays(
    epochs: int, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = load_config(LDAM_DRW, [f"train.epochs={epochs}"])
    counts = [5000, 50]
    last = epochs - 1
    assert drw_weights(counts, 0, cfg.loss.reweight_epoch, cfg.loss.beta) is None
    assert drw_weights(counts, last, cfg.loss.reweight_epoch, cfg.loss.beta) is not None
    steps = 100
    factor = lr_factor(last * steps, steps, epochs, cfg.schedule)
    assert factor == pytest.approx(cfg.schedule.gamma**2)  # both milestones passed
    assert lr_factor(0, steps, epochs, cfg.schedule) < 1  # the warm-up kept (scaled)
    err = capsys.readouterr().err
    assert (
        f"train.epochs={epochs} (the recipe's 200)" in err and "loss.reweight_epoch 160 ->" in err
    )


def test_events_scale_proportionally_and_round_to_whole_epochs() -> None:
    cfg = load_config(LDAM_DRW, ["train.epochs=20"])
    assert cfg.schedule.milestones == [16, 18]
    assert cfg.loss.reweight_epoch == 16
    assert cfg.schedule.warmup_epochs == 0.5  # a length: scaled, kept to 0.01 epoch
    longer = load_config(LDAM_DRW, ["train.epochs=400"])
    assert longer.schedule.milestones == [320, 360] and longer.loss.reweight_epoch == 320
    drs = load_config("recipes/cifar10_lt/ce_drs_r100.yaml", ["train.epochs=20"])
    assert drs.train.resample_epoch == 16


def test_keys_given_on_the_command_line_and_the_switch_keep_their_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    given = load_config(LDAM_DRW, ["train.epochs=20", "loss.reweight_epoch=19"])
    assert given.loss.reweight_epoch == 19 and given.schedule.milestones == [16, 18]
    kept = load_config(LDAM_DRW, ["train.epochs=20", "schedule.scale_with_epochs=false"])
    assert kept.schedule.milestones == [160, 180] and kept.loss.reweight_epoch == 160
    capsys.readouterr()
    same = load_config(LDAM_DRW, ["train.epochs=200"])
    assert same.schedule.milestones == [160, 180]
    assert "scaled" not in capsys.readouterr().err
    assert load_config(LDAM_DRW).schedule.milestones == [160, 180]


def test_an_event_outside_the_recipes_run_stays_outside() -> None:
    """An event at epoch 0 (from the start) or at the end (never) does not move into the run."""
    recipe = load_config(None, ["loss.reweight_epoch=0", "schedule.milestones=[200]"])
    run = load_config(None, ["train.epochs=10"])
    scaled, changes = scale_to_epochs(run, recipe, set())
    assert scaled.loss.reweight_epoch == 0 and scaled.schedule.milestones == [10]
    assert "schedule.milestones [200] -> [10]" in changes


def test_the_rwsam_refresh_interval_scales_only_with_kde_weights() -> None:
    plain = load_config(LDAM_DRW, ["train.epochs=20"])
    assert plain.sam.refresh_every == 5  # no KDE weights: nothing is re-estimated
    kde = "recipes/ssl/simsiam_rwsam.yaml"
    full = load_config(kde)
    short = load_config(kde, [f"train.epochs={full.train.epochs // 10}"])
    assert short.sam.refresh_every == max(1, round(full.sam.refresh_every / 10))


def test_the_scaled_values_are_the_resolved_config_and_a_resume_never_rescales(
    tmp_path: Path,
) -> None:
    write_idx(tmp_path / "idx", n_train_per_class=12, n_test_per_class=2)
    overrides = [
        "data.dataset=fashion_mnist",
        f"data.root={tmp_path / 'idx'}",
        "data.cache_dir=null",
        "data.imbalance_ratio=3",
        "model.name=resnet20",
        "model.kwargs.width=0.25",
        "train.batch_size=16",
        "train.epochs=2",
        "train.device=cpu",
        "train.progress=false",
        "probe.enabled=false",
        f"out_dir={tmp_path / 'runs'}",
    ]
    run = train(load_config(LDAM_DRW, overrides))
    saved = RunFolder.open(run).read_config()
    assert saved.schedule.milestones == [1, 1] and saved.loss.reweight_epoch == 1
    resume(run, ["train.epochs=4"])  # extends the run: its schedule stays as it ran
    again = RunFolder.open(run).read_config()
    assert again.train.epochs == 4 and again.schedule.milestones == [1, 1]
    assert again.loss.reweight_epoch == 1


def test_an_element_set_on_the_command_line_is_kept(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(LDAM_DRW, ["train.epochs=20", "schedule.milestones.0=10"])
    assert cfg.schedule.milestones == [10, 180]  # the list as the user left it, not rescaled


def test_a_recipe_completed_by_its_overrides_still_loads(tmp_path: Path) -> None:
    """The recipe is the scaling reference without being valid alone (LDAM needs cosine here)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("loss: {name: ldam, reweight: class_balanced, reweight_epoch: 160}\n")
    cfg = load_config(recipe, ["model.classifier=cosine", "train.epochs=20"])
    assert cfg.loss.reweight_epoch == 16

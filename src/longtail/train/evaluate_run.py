"""Re-evaluate a finished (or interrupted) run's checkpoint on the test split; tau-norm's sweep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from longtail import runtime
from longtail.config import Config, merge_config, overrides_tree, to_dict
from longtail.data.prepared import PreparedData
from longtail.data.setup import prepare_data, prepare_validation, replaying
from longtail.data.source import DataSource
from longtail.deploy.model_files import run_record, write_model_files
from longtail.errors import LongtailError
from longtail.eval.monitor import monitor_names, monitor_prefix
from longtail.io import atomic_write_json, rounded
from longtail.run_folder import INDEX, RunFolder
from longtail.strategies.registry import trains_classifier
from longtail.train.build import build_model, evaluate_model
from longtail.train.probe_run import probe_run

# Evaluation may run elsewhere (device, batch, the data's new location), never on other data.
EVAL_OVERRIDABLE = (
    "train.device",
    "train.threads",
    "train.precision",
    "eval",
    "probe",
    "data.root",
    "data.train_list",  # where the lists now live (a moved train list must give the same counts)
    "data.val_list",
    "data.test_list",
    "data.cache_dir",
    "data.test_limit",
)


TAUS = [round(0.1 * k, 1) for k in range(21)]  # Kang et al.: tau in [0, 2], step 0.1


def evaluate_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Rebuild the model of ``run_dir``, load its checkpoint, evaluate; write ``eval.json``.

    With ``probe.enabled`` (the run's setting unless overridden) the frozen backbone is probed
    too (``probe.ood=fashion_mnist`` adds an out-of-domain probe to any finished run).
    """
    cfg, data, model, epoch, run = _load_run(run_dir, overrides)
    device = data.test_labels.device
    # a representation run's evaluation is its kNN monitor: knn_top1 etc., as in final.json
    named = monitor_prefix(not trains_classifier(cfg.strategy.name))
    result = monitor_names(evaluate_model(model, data, cfg, device), named)
    if cfg.probe.enabled:
        result.update(probe_run(model, data, cfg, device, None))
    result["epoch"] = epoch
    result = rounded(result)  # as final.json: the same numbers, written the same way
    atomic_write_json(run.file("eval.json"), result)
    # the run as trained (config.yaml), whatever this evaluation overrides; older runs get them too
    write_model_files(run, model, run_record(run.read_config(), data))
    return result


def taunorm_run(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    *,
    val_per_class: int = 50,
    val_seed: int = 0,
    taus: Sequence[float] = TAUS,
) -> dict[str, Any]:
    """tau-norm (Kang et al. 2020): sweep tau on a balanced validation split, test at the best.

    The validation split is the data's published one when it has one (``data.val_list``: ImageNet-LT,
    Places-LT), else training images outside the run's long-tailed subset (the same count per
    class, up to ``val_per_class``, seeded); the test set is used only once, at the chosen tau.
    Writes ``taunorm.json`` (chosen tau, the sweep curve, where the validation images came from,
    the test result).
    """
    cfg, data, model, epoch, run = _load_run(run_dir, overrides)
    device = data.test_labels.device
    val_images, val_labels, val_indices = prepare_validation(
        cfg.data, data.index_record, device, val_per_class, val_seed
    )
    val = replace(data, test_images=val_images, test_labels=val_labels)
    curve = [
        evaluate_model(model, val, replace(cfg, eval=replace(cfg.eval, tau_norm=t)), device)["top1"]
        for t in taus
    ]
    best = int(max(range(len(taus)), key=lambda i: (curve[i], -i)))  # ties: the smallest tau
    tau = float(taus[best])
    test = evaluate_model(model, data, replace(cfg, eval=replace(cfg.eval, tau_norm=tau)), device)
    result = {
        "method": "tau-norm",
        "tau": tau,
        "val_top1_at_tau": curve[best],
        "sweep": {"tau": [float(t) for t in taus], "val_top1": curve},
        "val_source": (
            f"published list {cfg.data.val_list or Path(cfg.data.root) / 'val.txt'}"
            if DataSource.of(cfg.data).has_published_val()
            else "training images outside the long-tailed subset"
        ),
        "val_per_class": len(val_indices) // data.num_classes,
        "val_seed": val_seed,
        "val_indices": val_indices.tolist(),
        "epoch": epoch,
        "test": test,
    }
    result = rounded(result)
    atomic_write_json(run.file("taunorm.json"), result)
    return result


def _load_run(
    run_dir: str | Path, overrides: Sequence[str]
) -> tuple[Config, PreparedData, nn.Module, int, RunFolder]:
    """A run's config (with evaluation overrides), its data subset and its checkpointed model."""
    run = RunFolder.open(run_dir)
    cfg = merge_config(
        [
            (f"{run.path}/config.yaml", to_dict(run.read_config())),
            ("the command line", overrides_tree(list(overrides), EVAL_OVERRIDABLE)),
        ]
    )
    runtime.set_threads(cfg.train.threads)
    device = runtime.resolve_device(cfg.train.device)
    state = run.load_checkpoint(map_location=device)
    data = prepare_data(replaying(cfg.data, run.file(INDEX)), device)  # the subset it trained on
    model = build_model(cfg, data, device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise LongtailError(f"{run.path}/checkpoint.pt does not fit its config's model") from None
    return cfg, data, model, int(state["epoch"]), run

"""Re-evaluate a finished (or interrupted) run's checkpoint on the test split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from longtail.config import merge_config, overrides_tree, to_dict
from longtail.errors import LongtailError
from longtail.io import atomic_write_json
from longtail.train import runtime
from longtail.train.build import build_model, evaluate_model
from longtail.train.data_setup import prepare_data
from longtail.train.run_folder import INDEX, RunFolder

# Evaluation may run elsewhere (device, batch, the data's new location), never on other data.
EVAL_OVERRIDABLE = (
    "train.device",
    "train.threads",
    "train.precision",
    "eval",
    "data.root",
    "data.cache_dir",
    "data.test_limit",
)


def evaluate_run(run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Rebuild the model of ``run_dir``, load its checkpoint, evaluate; write ``eval.json``."""
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
    data_cfg = cfg.data
    if data_cfg.dataset != "pack":
        data_cfg = replace(data_cfg, index_file=str(run.file(INDEX)))  # the subset it trained on
    data = prepare_data(data_cfg, device)
    model = build_model(cfg, data, device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise LongtailError(f"{run.path}/checkpoint.pt does not fit its config's model") from None
    result = evaluate_model(model, data, cfg, device)
    result["epoch"] = state["epoch"]
    atomic_write_json(run.file("eval.json"), result)
    return result

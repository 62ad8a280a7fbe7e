"""Re-evaluate a finished (or interrupted) run's checkpoint on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from longtail.config import from_dict
from longtail.errors import LongtailError
from longtail.io import atomic_write_json
from longtail.train import runtime
from longtail.train.data_setup import prepare_data
from longtail.train.run_folder import CHECKPOINT, CONFIG, INDEX, RunFolder
from longtail.train.trainer import build_model, evaluate_model


def evaluate_run(run_dir: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Rebuild the model of ``run_dir``, load its checkpoint, evaluate; write ``eval.json``.

    ``overrides`` may change how evaluation runs (``train.device=cpu``, ``eval.batch_size=256``,
    ``data.root=...`` when the data moved), never what was trained.
    """
    run = RunFolder.open(run_dir)
    tree = yaml.safe_load(run.file(CONFIG).read_text())
    for item in overrides or []:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if section not in ("train", "eval", "data") or not name:
            raise LongtailError(
                f"eval override '{item}' is not allowed: only train.*, eval.*, data.*"
            )
        tree.setdefault(section, {})[name] = yaml.safe_load(value)
    tree["data"]["index_file"] = str(run.file(INDEX))  # the exact subset the run trained on
    cfg = from_dict(tree, f"{run.path}/{CONFIG}")
    ckpt = run.file(CHECKPOINT)
    if not ckpt.is_file():
        raise LongtailError(f"{run.path} has no {CHECKPOINT}: the run ended before its first epoch")
    runtime.set_threads(cfg.train.threads)
    device = runtime.resolve_device(cfg.train.device)
    data = prepare_data(cfg.data, device)
    model = build_model(cfg, data, device)
    state = torch.load(ckpt, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    result = evaluate_model(model, data, cfg, device)
    result["epoch"] = state["epoch"]
    atomic_write_json(run.file("eval.json"), result)
    return result

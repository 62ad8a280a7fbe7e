"""The two files a finished run leaves for inference: ``model.safetensors`` and ``preprocess.json``.

``model.safetensors`` holds the state dict of the network :func:`longtail.train.build.build_model`
builds from the run's ``config.yaml`` (weights only, contiguous, CPU), so its key names are that
module's: a plain classifier's are the backbone's own (``conv1.weight`` ... ``fc.weight`` /
``fc.bias``, the classifier ``fc``); a Hybrid network's are ``backbone.*`` (its classifier
``backbone.fc.*``), ``projector.*`` and, for PSC / MPSC, ``contrastive.prototypes``; an SSL or KCL
network's ``backbone.*``, ``projector.*`` (and ``predictor.*``, ``key_encoder.*``).

``preprocess.json`` is everything else a new image needs: the per-channel ``mean`` / ``std`` (of
the training split, in [0, 1] units), ``channels`` (1: Pillow "L", 3: "RGB"), the square input
``image_size``, ``resize`` (streamed runs: shorter side to ``resize``, then the centre
``image_size`` crop; ``null``: resize the shorter side straight to ``image_size`` and crop), the
``classes`` in logit order, the ``model`` (name, classifier, kwargs, strategy, class and channel
counts), the evaluation's ``tau_norm`` / ``posthoc_tau`` with the ``train_counts`` the latter needs,
and whether the run trained a classifier at all (a representation run did not).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from longtail.config import Config
from longtail.data.prepared import PreparedData
from longtail.data.stream import FileImages
from longtail.errors import LongtailError
from longtail.io import atomic_write, atomic_write_json
from longtail.run_folder import RunFolder
from longtail.strategies.registry import trains_classifier

MODEL = "model.safetensors"
PREPROCESS = "preprocess.json"
FORMAT = 1


def preprocess_record(
    cfg: Config,
    classes: list[str],
    mean: list[float],
    std: list[float],
    train_counts: list[int],
    image_shape: tuple[int, int, int],
    resize: int | None,
) -> dict[str, Any]:
    """The ``preprocess.json`` record (module docstring); ``image_shape`` is ``(C, H, W)``."""
    channels, height, width = image_shape
    if height != width:
        raise LongtailError(f"images are {height}x{width}: longtail predicts on square inputs")
    return {
        "format": FORMAT,
        "classes": list(classes),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "channels": int(channels),
        "image_size": int(height),
        "resize": resize,
        "model": {
            "name": cfg.model.name,
            "classifier": cfg.model.classifier,
            "kwargs": dict(cfg.model.kwargs),
            "strategy": cfg.strategy.name,
            "num_classes": len(classes),
            "in_chans": int(channels),
        },
        "eval": {"tau_norm": cfg.eval.tau_norm, "posthoc_tau": cfg.eval.posthoc_tau},
        "train_counts": [int(n) for n in train_counts],
        "classifier_trained": trains_classifier(cfg.strategy.name),
    }


def run_record(cfg: Config, data: PreparedData) -> dict[str, Any]:
    """:func:`preprocess_record` of a prepared run: its test images' size and crop."""
    test = data.test_images
    resize = test.resize if isinstance(test, FileImages) else None
    c, h, w = (int(n) for n in test.shape[1:])
    return preprocess_record(cfg, data.classes, data.mean, data.std, data.train_counts, (c, h, w),
                             resize)  # fmt: skip


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as safetensors takes it: detached, CPU, contiguous, unshared."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def write_model_files(run: RunFolder, model: nn.Module, record: dict[str, Any]) -> None:
    """Write both files atomically (a killed write leaves the previous file or none)."""
    from safetensors.torch import save

    if not run.writes:
        return
    blob = save(weights(model), metadata={"format": str(FORMAT), "preprocess": PREPROCESS})
    atomic_write(run.file(MODEL), lambda handle: handle.write(blob))
    atomic_write_json(run.file(PREPROCESS), record)


def read_model_files(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and the preprocess record of a finished run, each problem one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run = Path(run_dir)
    model_path, pre_path = run / MODEL, run / PREPROCESS
    for path in (model_path, pre_path):
        if not path.is_file():
            raise LongtailError(
                f"{path} is missing: {run} is not a finished run of this longtail version"
                f" (re-evaluate it with  longtail eval {run}  to write its model files)"
            )
    try:
        record = json.loads(pre_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise LongtailError(f"{pre_path} is not valid JSON ({err}): re-run longtail eval") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise LongtailError(f"{pre_path} is not a format-{FORMAT} preprocess record: re-run eval")
    try:
        state = load_file(str(model_path))
    except (SafetensorError, OSError) as err:
        raise LongtailError(f"{model_path} is unreadable ({err}): re-run longtail eval") from None
    return state, record

"""``longtail export RUN``: the run's classifier as a ``torch.export`` program (and as ONNX,
deploy/onnx_export.py), each checked against eager before it is written.

The program (``model.pt2`` in the run folder) takes what a decoder gives: uint8 images
``[B, C, S, S]`` (any batch size, C and S from ``preprocess.json``) and returns float32 logits
``[B, K]`` in ``preprocess.json``'s class order. Normalisation by the training split's mean and
std, and the evaluation's tau-norm or post-hoc adjustment, are inside it; resizing is not (see
``preprocess.json``'s ``resize`` / ``image_size``). It is traced in float32 on the CPU and checked
on a batch of seeded random images to give eager's logits (to 1e-4 of their scale).

Load it with ``torch.export.load("model.pt2").module()``, nothing of longtail needed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.data.augment import channel_stats, normalize
from longtail.deploy.logit_check import check_logits
from longtail.deploy.onnx_export import ONNX, PACKAGES, export_onnx, missing_packages
from longtail.deploy.predict import load_predictor
from longtail.errors import LongtailError
from longtail.io import atomic_write

PROGRAM = "model.pt2"
CHECK_BATCH = 5
TOLERANCE = 1e-4  # of the logits' scale: a traced graph may fuse ops in another order


class Uint8Classifier(nn.Module):
    """uint8 ``[B, C, S, S]`` -> logits ``[B, K]``: normalisation, then the run's classifier."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float], channels: int):
        super().__init__()
        m, s = channel_stats(mean, std, channels, "cpu")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)
        self.model = model

    mean: Tensor
    std: Tensor

    def forward(self, images: Tensor) -> Tensor:
        return self.model(normalize(images, self.mean, self.std)).float()  # type: ignore[no-any-return]


FORMATS = ("both", "pt2", "onnx")  # both: model.pt2, and model.onnx where its packages are


def export_run(run_dir: str | Path, fmt: str = "both") -> dict[str, Any]:
    """Write ``RUN/model.pt2`` and/or ``RUN/model.onnx`` (deploy/onnx_export.py); return where,
    the input shape and the measured checks. ``both`` skips ONNX, saying why, where its packages
    are missing; ``onnx`` then fails."""
    if fmt not in FORMATS:
        raise LongtailError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    predictor = load_predictor(run_dir, "cpu")
    record = predictor.record
    channels, size = int(record["channels"]), int(record["image_size"])
    eager = Uint8Classifier(predictor.model, record["mean"], record["std"], channels).eval()
    example = torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8,
                            generator=torch.Generator().manual_seed(0))  # fmt: skip
    check = torch.randint(0, 256, (CHECK_BATCH, channels, size, size), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    summary: dict[str, Any] = {
        "input": f"uint8 [B, {channels}, {size}, {size}]",
        "output": f"float32 logits [B, {len(record['classes'])}]",
    }
    if fmt in ("both", "pt2"):
        summary.update(_export_program(eager, example, check, Path(run_dir) / PROGRAM, record))
    if fmt == "onnx" or (fmt == "both" and not missing_packages()):
        summary.update(export_onnx(eager, example, check, Path(run_dir) / ONNX, TOLERANCE))
    elif fmt == "both":
        missing = ", ".join(missing_packages())
        summary["onnx"] = f"not written ({missing} missing): pip install {' '.join(PACKAGES)}"
    return summary


def _export_program(
    eager: nn.Module, example: Tensor, check: Tensor, path: Path, record: dict[str, Any]
) -> dict[str, Any]:
    """``torch.export`` ``eager`` (batch dimension dynamic), check it on ``check``, write it."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with torch.no_grad():
            program = torch.export.export(eager, (example,), dynamic_shapes=({0: batch},))
    except Exception as err:  # noqa: BLE001 -- torch.export's many failure types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LongtailError(
            f"torch.export cannot trace {record['model']['name']} ({first}): predict with"
            " longtail predict, or open an issue naming the model"
        ) from None
    with torch.no_grad():
        want, got = eager(check), program.module()(check)
    diff, scale = check_logits(
        got, want, TOLERANCE, "the exported program", "predict with longtail predict"
    )
    with warnings.catch_warnings():  # torch's note on weight groups of a CPU-only program
        warnings.filterwarnings("ignore", message="No complete tensor found")
        atomic_write(path, lambda handle: torch.export.save(program, handle))
    return {"program": str(path), "max_abs_diff": diff, "logit_scale": scale}

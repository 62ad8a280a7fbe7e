"""``model.onnx`` beside ``model.pt2``: the same uint8-in, logits-out classifier as an ONNX graph
(torch's dynamo exporter), checked with onnxruntime against eager before it is written.

The optional packages are ``onnx``, ``onnxscript`` (the exporter's op library) and ``onnxruntime``
(the check): ``pip install onnx onnxscript onnxruntime``. An ONNX file is never written unchecked.
Its input is ``images`` (uint8 ``[batch, C, S, S]``), its output ``logits`` (float32 ``[batch, K]``).

Use it with ``onnxruntime.InferenceSession("model.onnx").run(None, {"images": batch})[0]``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.deploy.logit_check import check_logits
from longtail.errors import LongtailError
from longtail.io import atomic_write

ONNX = "model.onnx"
PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def missing_packages() -> list[str]:
    """The ONNX packages that are not installed (none: ONNX export works here)."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's notes (torchvision ops it skips, pytree deprecations) are not ours to print."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    eager: nn.Module, example: Tensor, check: Tensor, path: Path, tolerance: float
) -> dict[str, Any]:
    """Write ``path`` (ONNX, batch dimension dynamic) from ``eager`` traced on ``example``
    (uint8 ``[2, C, S, S]``), after onnxruntime's logits on ``check`` matched eager's to
    ``tolerance`` of their scale. Returns the check's figures."""
    missing = missing_packages()
    if missing:
        raise LongtailError(
            f"ONNX export needs {', '.join(missing)}: pip install {' '.join(PACKAGES)}"
        )
    import onnxruntime

    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                eager, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                input_names=["images"], output_names=["logits"], verbose=False,
            )  # fmt: skip
    except Exception as err:  # noqa: BLE001 -- the exporter's many failure types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LongtailError(
            f"torch.onnx cannot export this model ({first}): use model.pt2 (--format pt2)"
        ) from None
    if program is None:
        raise LongtailError("torch.onnx returned no program: use model.pt2 (--format pt2)")
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:  # the graph is saved, loaded into onnxruntime and checked before it takes its name
        with _quiet():
            program.save(tmp)
        session = onnxruntime.InferenceSession(tmp, providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": check.numpy()})[0])
        with torch.no_grad():
            want = eager(check)
        diff, _ = check_logits(
            got, want, tolerance, "the ONNX graph", "use model.pt2 (--format pt2)"
        )
        blob = Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)
    atomic_write(path, lambda handle: handle.write(blob))
    return {"onnx": str(path), "onnx_max_abs_diff": diff, "onnx_runtime": onnxruntime.__version__}

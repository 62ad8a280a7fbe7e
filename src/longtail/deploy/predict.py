"""``longtail predict RUN IMAGE|FOLDER``: top-k classes of image files from a finished run's files.

Only ``model.safetensors``, ``preprocess.json`` and ``config.yaml`` are read (never the training
data): each image is decoded by Pillow in the run's channel mode, sized as the run's test images
were (``preprocess.json``'s ``resize`` / ``image_size``), normalised by the training split's
mean and std, and classified by the network as the run evaluated it (tau-norm, post-hoc
adjustment and precision included), so the top-1 on the run's own test images is ``eval``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from longtail import runtime
from longtail.config import Config
from longtail.data.augment import channel_stats, normalize
from longtail.data.readers._decode import IMAGE_SUFFIXES, open_pixels, resize_center_crop
from longtail.data.stream_transforms import eval_crop
from longtail.deploy.model_files import read_model_files
from longtail.errors import LongtailError
from longtail.run_folder import RunFolder
from longtail.train.build import build_network, evaluation_model


@dataclass
class Predictor:
    """A finished run's classifier, ready for uint8 images of its size."""

    model: nn.Module
    record: dict[str, Any]
    cfg: Config
    device: torch.device

    @property
    def classes(self) -> list[str]:
        return list(self.record["classes"])

    def load_image(self, path: Path) -> np.ndarray:
        """uint8 ``[C, S, S]`` (S = image_size) as the run's test images were sized."""
        channels, size, resize = (self.record[k] for k in ("channels", "image_size", "resize"))
        if resize is not None:  # a streamed run's evaluation crop
            pixels = eval_crop(path, resize, size, channels)
        else:
            pixels = open_pixels(path, "L" if channels == 1 else "RGB")
            if pixels.shape[:2] != (size, size):
                from PIL import Image

                pixels = np.asarray(resize_center_crop(Image.fromarray(pixels), size))
        return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    @torch.inference_mode()
    def probabilities(self, images: Tensor) -> Tensor:
        """Softmax over classes ``[N, K]`` (float32, CPU) of uint8 images ``[N, C, S, S]``."""
        mean, std = channel_stats(self.record["mean"], self.record["std"],
                                  self.record["channels"], self.device)  # fmt: skip
        x = normalize(images.to(self.device), mean, std)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = runtime.autocast_dtype(self.cfg.train, self.device)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            logits = self.model(x)
        return logits.float().softmax(dim=1).cpu()


def load_predictor(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """The run's network from its files, in eval mode, wrapped as its evaluation wraps it."""
    state, record = read_model_files(run_dir)
    if not record.get("classifier_trained", True):
        raise LongtailError(
            f"{run_dir} is a representation-learning run ({record['model']['strategy']}): its"
            " classifier was never trained; predict with a run that trained one on these features"
            " (e.g. a linear or cRT stage with init.run=...)"
        )
    cfg = RunFolder.open(run_dir).read_config()
    where = torch.device(device)
    spec = record["model"]
    model = build_network(cfg, spec["num_classes"], spec["in_chans"], where)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise LongtailError(f"model.safetensors does not fit the run's config ({first})") from None
    model = evaluation_model(model, cfg.eval, record["train_counts"]).eval()
    return Predictor(model, record, cfg, where)


def image_files(target: str | Path) -> list[Path]:
    """``target`` itself (one image) or every image below the folder, sorted."""
    path = Path(target)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LongtailError(f"{path} does not exist: give an image file or a folder of images")
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise LongtailError(
            f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}): point at a folder of images"
        )
    return found


def predict_files(
    run_dir: str | Path, target: str | Path, topk: int = 5, batch_size: int = 256,
    device: str = "cpu",
) -> list[dict[str, Any]]:  # fmt: skip
    """One record per image: ``{"path", "top": [{"class", "index", "probability"}, ...]}``."""
    if topk < 1:
        raise LongtailError(f"--topk {topk}: give a number of classes >= 1")
    predictor = load_predictor(run_dir, device)
    paths = image_files(target)
    k = min(topk, len(predictor.classes))
    out: list[dict[str, Any]] = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = torch.from_numpy(np.stack([predictor.load_image(p) for p in chunk]))
        probs, idx = predictor.probabilities(images).topk(k, dim=1)
        for path, p_row, i_row in zip(chunk, probs.tolist(), idx.tolist(), strict=True):
            top = [{"class": predictor.classes[i], "index": i, "probability": round(p, 6)}
                   for p, i in zip(p_row, i_row, strict=True)]  # fmt: skip
            out.append({"path": str(path), "top": top})
    return out


def format_predictions(records: Sequence[dict[str, Any]]) -> str:
    """One line per image: ``path  class (p) | class (p) ...``."""
    return "\n".join(
        f"{r['path']}  " + " | ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
        for r in records
    )

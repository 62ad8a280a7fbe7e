"""Shared by the SSL, rwSAM and probe tests: tiny SSL overrides and references written by hand.

The references here never call longtail's feature extraction or kNN: pooled features are the mean
of ``forward_features`` over positions of ``(x / 255 - mean) / std``, and the kNN classifier is a
loop over queries (cosine similarity, the k most similar, votes ``exp(s / tau)``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.config import load_config
from longtail.data.setup import prepare_data
from longtail.strategies.registry import method_config
from longtail.train.build import TrainingParts, build_training
from tiny_runs import tiny_run

# Small heads and probes: SSL runs of 2 epochs x 2 steps finish in about a second on one core.
# Each method's section has only its own keys: the heads' sizes go to the methods that have them.
HEADS = ["strategy.proj_hidden=32", "strategy.proj_dim=16", "strategy.pred_hidden=8"]
SSL_TINY = [
    "probe.knn_k=10",
    "schedule.warmup_epochs=0",  # a planned length a resumed run shares
    "train.max_steps_per_epoch=2",
]


def ssl_parts(idx_root: Path, out: Path, *extra: str) -> TrainingParts:
    """The built parts (model, loader, step) of a tiny SSL run, without training it."""
    cut = "train.max_steps_per_epoch=5"  # room for 3 steps that fill a queue, and one more
    cfg = load_config(None, ssl_run(idx_root, out, "train.channels_last=false", cut, *extra))
    return build_training(cfg, prepare_data(cfg.data, torch.device("cpu")), torch.device("cpu"))


def ssl_run(idx_root: Path, out: Path, *extra: str) -> list[str]:
    """The overrides of a tiny SSL run on the idx fixture at ``idx_root``, written under ``out``."""
    names = [item.split("=", 1)[1] for item in extra if item.startswith("strategy.name=")]
    own = {f.name for f in fields(method_config(names[-1] if names else "supervised"))}
    heads = [h for h in HEADS if h.split("=")[0].removeprefix("strategy.") in own]
    return tiny_run(idx_root, *SSL_TINY, *heads, f"out_dir={out}", *extra)


def pooled_by_hand(
    backbone: nn.Module, images: Tensor, mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """float64 ``[N, F]``: the spatial mean of the feature map of the normalised uint8 ``images``.

    Runs on a deep copy in eval mode, so the caller's module (modes, BN statistics) is untouched.
    """
    net: nn.Module = copy.deepcopy(backbone).eval()
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
    x = (images.float() / 255.0 - m) / s
    with torch.no_grad():
        fmap = net.forward_features(x)  # type: ignore[operator]
    return fmap.double().mean(dim=(2, 3))  # type: ignore[no-any-return]


def knn_by_hand(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, num_classes: int, k: int, tau: float
) -> list[int]:
    """Predicted class of each query: the k nearest bank rows by cosine vote ``exp(s / tau)``."""
    bank = F.normalize(bank.double(), dim=1)
    preds = []
    for q in F.normalize(queries.double(), dim=1):
        sims = (bank @ q).tolist()
        nearest = sorted(range(len(sims)), key=lambda j: -sims[j])[: min(k, len(sims))]
        votes = [0.0] * num_classes
        for j in nearest:
            votes[int(bank_labels[j])] += math.exp(sims[j] / tau)
        preds.append(max(range(num_classes), key=lambda c: (votes[c], -c)))
    return preds


def knn_top1_bounds(
    bank: Tensor, bank_labels: Tensor, queries: Tensor, labels: Tensor, num_classes: int, k: int,
    tau: float, eps: float = 1e-5,
) -> tuple[float, float]:  # fmt: skip
    """Lowest and highest top-1 (percent) a float32 kNN can reach against this float64 loop.

    A query is undecided when float32 rounding could flip it: its k-th and (k+1)-th similarities
    differ by < ``eps``, or its two best class votes by < ``eps`` relative. Decided queries count
    exactly as :func:`knn_by_hand` predicts; an undecided one counts as wrong for the low bound
    and right for the high one (a random network's features make near-ties common).
    """
    unit_bank = F.normalize(bank.double(), dim=1)
    preds = knn_by_hand(bank, bank_labels, queries, num_classes, k, tau)
    low = high = 0
    for q, pred, y in zip(
        F.normalize(queries.double(), dim=1), preds, labels.tolist(), strict=True
    ):
        sims = sorted((unit_bank @ q).tolist(), reverse=True)
        cut = min(k, len(sims))
        close_cut = cut < len(sims) and sims[cut - 1] - sims[cut] < eps
        nearest = sorted(range(len(sims)), key=lambda j: -float(unit_bank[j] @ q))[:cut]
        votes = [0.0] * num_classes
        for j in nearest:
            votes[int(bank_labels[j])] += math.exp(float(unit_bank[j] @ q) / tau)
        best, second = sorted(votes, reverse=True)[:2]
        undecided = close_cut or best - second < eps * best
        low += int(pred == y and not undecided)
        high += int(pred == y or undecided)
    return 100.0 * low / len(preds), 100.0 * high / len(preds)

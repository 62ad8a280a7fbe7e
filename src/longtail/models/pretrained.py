"""``model.pretrained=FILE``: start a model from a torchvision-format state dict (ImageNet weights).

Our ImageNet ResNets name their modules as torchvision does (``conv1``, ``layer1.0.bn2``,
``fc``), so a file saved by ``torch.save(torchvision_model.state_dict(), FILE)`` loads key for key.
Accepted wrappers: ``{"state_dict": ...}`` or ``{"model": ...}`` around the tensors, and the
``module.`` prefix DistributedDataParallel checkpoints carry. Every backbone tensor must be
there with its shape; the classifier (``fc.*``) is taken only when it fits (same classes, same
kind): Places-LT starts from ImageNet's 1000-way weights and trains a 365-way head from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from longtail.errors import LongtailError

HEAD = "fc."


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a state-dict file, unwrapped (``state_dict`` / ``model`` / ``module.``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LongtailError(
            f"model.pretrained={path} does not exist: point it at a torchvision-format state dict"
            " (torch.save(model.state_dict(), FILE))"
        )
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle of arbitrary objects, a truncated file, not torch at all
        raise LongtailError(
            f"model.pretrained={path} is not a readable state dict ({type(err).__name__}:"
            f" {str(err).splitlines()[0][:120] if str(err) else 'no detail'}): save it with"
            " torch.save(model.state_dict(), FILE)"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise LongtailError(
            f"model.pretrained={path} holds no tensor dict: save it with"
            " torch.save(model.state_dict(), FILE)"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Copy ``path``'s weights into ``model`` (a Backbone); return what was loaded.

    Returns ``{"file", "tensors", "classifier": "loaded" | "kept at initialisation"}``.

    Raises:
        LongtailError: a backbone tensor is missing or has another shape (another architecture,
        another stem or channel count), or the file holds tensors this model has no place for.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    backbone = [k for k in own if not k.startswith(HEAD)]
    missing = [k for k in backbone if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(HEAD)]
    wrong = [k for k in backbone if k in state and state[k].shape != own[k].shape]
    name = type(model).__name__
    if missing or unexpected or wrong:
        problem = (
            f"lacks {len(missing)} of this {name}'s tensors, the first {missing[0]}"
            if missing
            else f"has {len(unexpected)} tensors this {name} lacks, the first {unexpected[0]}"
            if unexpected
            else f"gives {wrong[0]} the shape {tuple(state[wrong[0]].shape)}, this {name} has"
            f" {tuple(own[wrong[0]].shape)}"
        )
        raise LongtailError(
            f"model.pretrained={path} {problem}: use weights of the same architecture (model.name,"
            " its stem and channels)"
        )
    head = {k: v for k, v in state.items() if k.startswith(HEAD)}
    fits = set(head) == {k for k in own if k.startswith(HEAD)} and all(
        v.shape == own[k].shape for k, v in head.items()
    )
    chosen = {k: state[k] for k in backbone} | (head if fits else {})
    with torch.no_grad():
        for key, value in chosen.items():
            own[key].copy_(value)  # the model's own tensors: dtype and device kept
    return {
        "file": str(Path(path).expanduser()),
        "tensors": len(chosen),
        "classifier": "loaded" if fits else "kept at initialisation",
    }

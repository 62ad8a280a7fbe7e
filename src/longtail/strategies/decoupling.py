"""Decoupled classifier learning (Kang et al., ICLR 2020): cRT, tau-norm and LWS on a trained run.

Stage 1 is any run (supervised, or a hybrid / contrastive run); stage 2 is a new run of the
``decoupled`` method (:mod:`.decoupled`) that starts from stage 1's checkpoint (``init.run=RUN_DIR``,
this module's ``init.*`` section) on the same long-tailed subset, through the same epoch loop and
step as a supervised run. This module registers no method: it holds what the builder, the trainer
and the evaluation use of a stage (so they import no method module):

* **cRT** (classifier re-training): ``init.freeze=backbone``, ``init.reset_classifier=true``,
  ``train.sampler=class_balanced``, a short cosine schedule (Kang: 10 epochs).
* **LWS** (learnable weight scaling): ``init.freeze=all_but_scales``; the classifier is wrapped in
  :class:`LearnableWeightScaling` and only the per-class scales f_c learn:
  ``logits_c = f_c * (w_c . x + b_c)``, with class-balanced sampling (Kang: 5 epochs).
* **tau-norm**: no training; ``logits_c = (w_c / ||w_c||^tau) . x``, bias dropped
  (:class:`TauNormalized`, ``eval.tau_norm``), tau picked on a balanced validation split
  (``longtail taunorm RUN_DIR``).
* **Two-stage** (e.g. TwoStage-SC): a hybrid run with ``curriculum=fixed, fixed_alpha=1`` (pure
  SupCon) then cRT with ``init.run`` pointing at it; a hybrid source gives its ``backbone.*`` keys.

Frozen parts get ``requires_grad=False`` (the optimiser never sees them) and stay in eval mode
through every ``model.train()`` (BN running statistics frozen, as MoCo's linear probe); after the
stage :func:`check_frozen` asserts they are bit-identical to the source (parameters and buffers).
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from longtail.data.config import DataConfig
from longtail.errors import LongtailError
from longtail.models.backbone import Backbone
from longtail.models.config import ModelConfig
from longtail.models.heads import tau_normalize

if TYPE_CHECKING:  # run_folder reads config.yaml, and the config holds this module's init.*
    from longtail.run_folder import RunFolder


@dataclass
class InitConfig:
    """``init.*``: start from another run's checkpoint (decoupled stage 2: cRT, LWS; two-stage).

    A missing init.run is checked when training starts (decoupling.require_source), so a
    stage-2 recipe still loads for `longtail data` and the recipe checks.
    """

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "freeze": ("none", "backbone", "all_but_scales"),
    }

    run: str | None = None  # the source run folder; its lt_index.json becomes data.index_file
    freeze: str = "none"  # none | backbone (cRT) | all_but_scales (LWS)
    reset_classifier: bool = False  # re-initialise the classifier after loading (cRT)

    def check(self) -> None:
        if self.freeze == "all_but_scales" and self.reset_classifier:
            raise LongtailError(
                "init.freeze=all_but_scales (LWS) scales the source's classifier: set"
                " init.reset_classifier=false"
            )


def upgrade_saved(tree: dict[str, Any]) -> dict[str, Any]:
    """A run folder's config.yaml written when a stage 2 ran as ``strategy.name=supervised`` with
    ``init.freeze`` set: the same run is ``strategy.name=decoupled`` now (nothing else changed)."""
    strategy, init = tree.get("strategy"), tree.get("init")
    if (
        isinstance(strategy, dict)
        and isinstance(init, dict)
        and strategy.get("name") == "supervised"
        and init.get("freeze", "none") != "none"
    ):
        return {**tree, "strategy": {**strategy, "name": "decoupled"}}
    return tree


class LearnableWeightScaling(nn.Module):
    """LWS: ``[B, D] -> [B, C]``, ``logits[b, c] = scales[c] * classifier(x)[b, c]``, scales init 1.

    Kang et al. 2020 §4 ("learnable weight scaling"): the scale multiplies the whole logit, bias
    included, as in their ``classifier-balancing`` code.
    """

    def __init__(self, classifier: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x) * self.scales  # type: ignore[no-any-return]


class TauNormalized(nn.Module):
    """tau-norm evaluation: ``[B, C_in, H, W] -> [B, C]``, logits ``x . w_c / ||w_c||^tau``, no bias.

    Kang et al. 2020 §4 (tau-normalised classifier); tau = 0 is the plain classifier without its
    bias. Needs a linear classifier (a cosine classifier already has unit rows).
    """

    def __init__(self, model: nn.Module, tau: float) -> None:
        super().__init__()
        net = classification_net(model)
        head = net.get_classifier()
        if not isinstance(head, nn.Linear):
            raise LongtailError(
                "tau-norm needs a linear classifier (model.classifier=linear, no LWS): a cosine"
                " classifier's rows already have unit norm"
            )
        self.net, self.head, self.tau = net, head, tau

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        return F.linear(pooled, tau_normalize(self.head.weight, self.tau).to(pooled.dtype))


def classification_net(model: nn.Module) -> Backbone:
    """The image -> logits network: the model itself, or a HybridNet's ``backbone``."""
    net = getattr(model, "backbone", model)
    if not isinstance(net, Backbone):
        raise LongtailError(f"{type(net).__name__} is not a longtail model: build it by name")
    return net


def wrap_for_stage(net: Backbone, init: InitConfig) -> None:
    """Structural changes of ``init.freeze`` (LWS wraps the classifier); no weights."""
    if init.freeze == "all_but_scales":
        net.fc = LearnableWeightScaling(net.fc, net.num_classes)


def frozen_keys(net: nn.Module, freeze: str) -> list[str]:
    """State-dict keys (parameters and buffers) a stage keeps fixed."""
    keys = list(net.state_dict())
    if freeze == "backbone":
        return [k for k in keys if not k.startswith("fc.")]
    if freeze == "all_but_scales":
        return [k for k in keys if k != "fc.scales"]
    return []


def _train_keeping_frozen_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    nn.Module.train(self, mode)
    names: list[str] = getattr(self, "_frozen_modules", [])
    for name in names:
        self.get_submodule(name).eval()
    return self


def freeze(net: Backbone, how: str) -> None:
    """Freeze as ``init.freeze`` says: ``backbone`` (all but ``fc``) or ``all_but_scales`` (LWS).

    The frozen modules lose ``requires_grad`` and ``net.train()`` is overridden on this instance
    so that they stay in eval mode (BN running statistics fixed) while the rest trains.
    """
    if how == "none":
        return
    trainable = "fc" if how == "backbone" else "fc.scales"
    for name, param in net.named_parameters():
        param.requires_grad_(name == trainable or name.startswith(trainable + "."))
    names = [name for name, _ in net.named_children() if name != "fc"]
    if how == "all_but_scales":
        names.append("fc.classifier")
    net._frozen_modules = names  # type: ignore[assignment]
    net.train = types.MethodType(_train_keeping_frozen_eval, net)  # type: ignore[method-assign]
    net.train(net.training)


def _open_source(path: str) -> RunFolder:
    if not (Path(path) / "config.yaml").is_file():
        raise LongtailError(
            f"init.run={path} is not a run folder (no config.yaml): pass init.run=RUN_DIR of a"
            " finished stage-1 run"
        )
    from longtail.run_folder import RunFolder

    return RunFolder.open(path)


def _source_state(
    init: InitConfig, model_cfg: ModelConfig, data: DataConfig
) -> tuple[Path, dict[str, Tensor]]:
    """The classification network's weights from ``init.run``'s checkpoint, checked to fit: the
    source run built ``model_cfg``'s network on ``data.dataset`` at ``data.imbalance_ratio``."""
    assert init.run is not None
    run = _open_source(init.run)
    path, source = run.path, run.read_config()
    mine = (model_cfg.name, model_cfg.kwargs, model_cfg.classifier, data.dataset)
    theirs = (source.model.name, source.model.kwargs, source.model.classifier, source.data.dataset)
    if mine != theirs:
        raise LongtailError(
            f"init.run={path} trained {theirs[0]} {theirs[1]} ({theirs[2]}) on {theirs[3]}, this"
            f" run builds {mine[0]} {mine[1]} ({mine[2]}) on {mine[3]}: set model.* and"
            " data.dataset as in the source run"
        )
    if source.data.imbalance_ratio != data.imbalance_ratio:
        raise LongtailError(
            f"init.run={path} trained on imbalance ratio {source.data.imbalance_ratio:g}, this run"
            f" says {data.imbalance_ratio:g} (it reuses the source's subset): set"
            f" data.imbalance_ratio={source.data.imbalance_ratio:g} or pick a run of that ratio"
        )
    state: dict[str, Tensor] = run.load_checkpoint()["model"]
    if any(k.startswith("backbone.") for k in state):  # a method's network around the
        # backbone (hybrid, KCL, SSL): keep the backbone, drop heads, queue, key encoder
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    return path, state


def require_source(init: InitConfig) -> None:
    """A stage that freezes or resets needs its source run: a one-line error naming the fix."""
    if init.run is None and (init.freeze != "none" or init.reset_classifier):
        what = f"init.freeze={init.freeze}" if init.freeze != "none" else "init.reset_classifier"
        raise LongtailError(
            f"{what} starts from a trained run: pass init.run=RUN_DIR (a finished stage-1 run"
            " folder)"
        )


def source_index_file(init: InitConfig) -> str | None:
    """The source run's ``lt_index.json``: a stage trains on the subset its source trained on."""
    require_source(init)
    if init.run is None:
        return None
    index = _open_source(init.run).file("lt_index.json")
    if not index.is_file():
        raise LongtailError(f"init.run={init.run} has no lt_index.json: pass a finished run")
    return str(index)


def initialize(
    model: nn.Module, init: InitConfig, model_cfg: ModelConfig, data: DataConfig
) -> dict[str, Tensor] | None:
    """Load ``init.run``'s weights, reset the classifier if asked, freeze; return the frozen state.

    ``model_cfg`` and ``data`` are the run's ``model.*`` and ``data.*``: the source run must have
    built the same network on the same dataset and imbalance ratio. The returned clone of the
    frozen parameters and buffers is what :func:`check_frozen` compares against after the stage
    (``None`` when nothing is frozen or there is no source).
    """
    require_source(init)
    if init.run is None:
        return None
    net = classification_net(model)
    path, state = _source_state(init, model_cfg, data)
    if isinstance(net.fc, LearnableWeightScaling) and "fc.scales" not in state:
        # A plain source head goes inside the LWS wrapper; the scales keep their init of 1.
        state = {
            ("fc.classifier." + k[3:] if k.startswith("fc.") else k): v for k, v in state.items()
        }
        state["fc.scales"] = net.fc.scales.detach().clone()
    if init.reset_classifier:  # the source's head is replaced anyway: any head will do
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        state |= {f"fc.{k}": v for k, v in net.fc.state_dict().items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]  # lines[0] is a generic header
        raise LongtailError(
            f"init.run={path} holds weights that do not fit this model ({detail[:200]}): use a"
            " source run with the same model"
        ) from None
    if init.reset_classifier:
        net.reset_classifier(net.num_classes)
    freeze(net, init.freeze)
    keys = frozen_keys(net, init.freeze)
    current = net.state_dict()
    return {k: current[k].detach().clone() for k in keys} or None


def check_frozen(model: nn.Module, reference: dict[str, Tensor]) -> None:
    """Raise unless every frozen parameter and buffer equals ``reference`` bit for bit."""
    current = classification_net(model).state_dict()
    changed = [k for k, v in reference.items() if not torch.equal(current[k], v)]
    if changed:
        raise LongtailError(
            f"frozen tensors changed during the stage ({len(changed)}, first {changed[0]}): the"
            " freeze is broken; report it with the run folder"
        )

"""What a training method is, to the shared builder and stepper: a plug-in contract.

A method is one module under :mod:`longtail.strategies` holding a :class:`Method` subclass
decorated with :func:`longtail.strategies.registry.register`. The class declares

* ``config_class``: its ``strategy.*`` section, a :class:`MethodConfig` dataclass whose ``name``
  default is the method's name (``strategy.name`` picks the dataclass a config is read into);
* ``network(backbone, cfg, num_classes)``: the backbone wrapped with the method's heads;
* ``build(parts, cfg)``: its batches (a loader from ``parts.loader``) and the step module, an
  instance of the class itself, whose ``forward(batch)`` and ``loss(out, batch, reweighted)`` the
  :class:`~longtail.optim.stepper.Stepper` calls (see there for the optional hooks);
* ``check(cfg)``: the rules its section and the rest of the config must keep (one-line errors);
* class flags the shared checks and the evaluation read (``trains_classifier``, ``supports_sam``,
  ``example_weights``, ``supports_compile``, ``restages``).

Nothing else in the package names a method: adding one is its module and its tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from longtail.data.augment import AugmentSpec
from longtail.data.prepared import PreparedData
from longtail.errors import LongtailError, require

if TYPE_CHECKING:
    from longtail.config import Config, EvalConfig, SamConfig, TrainConfig


@dataclass
class MethodConfig:
    """The method (``strategy.name``); each method's dataclass adds the keys of its own section."""

    name: str = "supervised"  # a registered method: longtail list methods


@dataclass
class ProjectedConfig(MethodConfig):
    """The keys every contrastive method's projection head and similarity share."""

    temperature: float = 0.1  # tau of the similarity exp(z_i . z_j / tau)
    proj_hidden: int = 512  # projection head: features -> hidden -> proj_dim
    proj_dim: int = 128
    proj_batch_norm: bool = False  # BatchNorm after the head's hidden layer


View = tuple[AugmentSpec, str]  # an augmentation and the purpose its generator is seeded for


class LoaderFactory(Protocol):
    """``loader(mode, views, ...)``: batches of ``mode``-sampled images (``train.batch_size``), one
    augmented copy per view; ``sampler`` names the sampler's seed, ``cut`` applies
    ``train.max_steps_per_epoch``, ``with_indices`` adds the batch's positions in the training set."""

    def __call__(
        self,
        mode: str,
        views: list[View],
        *,
        sampler: str = "sampler",
        cut: bool = True,
        with_indices: bool = False,
    ) -> Any: ...


@dataclass
class MethodParts:
    """What the shared builder hands a method's :meth:`Method.build` (train/build.py fills it)."""

    net: nn.Module  # Method.network(...), on the device
    data: PreparedData
    device: torch.device
    augment: AugmentSpec  # the recipe's training view (augment.*)
    loader: LoaderFactory
    objective: nn.Module  # the run's classification loss (loss.*; DRW switched per epoch)
    seed: Callable[[str], int]  # the seed of a named purpose (sampler, view1, positives, ...)
    train: TrainConfig
    sam: SamConfig
    eval: EvalConfig
    transform: Callable[[Tensor], Tensor]  # uint8 batch -> model input, no augmentation

    def generator(self, purpose: str) -> torch.Generator:
        """A generator on the device seeded for ``purpose`` (its state goes in the step state)."""
        return torch.Generator(device=self.device).manual_seed(self.seed(purpose))


class Method(nn.Module):
    """A training method on the shared stepper (module docstring)."""

    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    trains_classifier: ClassVar[bool] = True  # False: a representation, evaluated by kNN
    supports_sam: ClassVar[bool] = True  # False: state that must not step twice per batch
    example_weights: ClassVar[bool] = False  # rwSAM's per-example weights (sam.weights)
    supports_compile: ClassVar[bool] = True  # train.compile is wired into its step
    restages: ClassVar[bool] = False  # init.freeze: re-trains a classifier of a source run
    summary: ClassVar[str] = ""  # one line for `longtail list methods`
    choices: ClassVar[dict[str, tuple[str, ...]]] = {}  # key of its section -> allowed values

    @classmethod
    def name(cls) -> str:
        return cls.config_class().name

    @classmethod
    def network(cls, backbone: nn.Module, cfg: Any, num_classes: int) -> nn.Module:
        """The backbone with the method's heads (the backbone itself when it adds none)."""
        return backbone

    @classmethod
    def build(cls, parts: MethodParts, cfg: Any) -> tuple[Any, Method]:
        """(loader, step module) of a run of this method."""
        raise NotImplementedError(f"{cls.__name__}.build")

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Rules of the method's section and of the config around it; one-line errors."""


def check_pretraining(cfg: Config, linear_head: bool = False) -> None:
    """The rules of a representation-learning run (its classifier is never trained).

    ``linear_head``: the projection may be one linear layer (``strategy.proj_hidden=0``).
    """
    from longtail.config import LossConfig

    s = cfg.strategy
    if cfg.train.resample_epoch is not None or cfg.train.sampler != "random":
        raise LongtailError(
            f"strategy.name={s.name} pre-trains on instance-sampled batches: set"
            " train.sampler=random and drop train.resample_epoch (class-balanced training of a"
            " classifier is a second stage)"
        )
    if (
        cfg.loss != LossConfig()
        or cfg.eval.tau_norm is not None
        or cfg.eval.posthoc_tau is not None
    ):
        raise LongtailError(
            f"strategy.name={s.name} trains no classifier, so loss.*, eval.tau_norm and"
            " eval.posthoc_tau have no effect: drop them (a classifier is a second stage)"
        )
    if isinstance(s, ProjectedConfig):
        require(
            ("strategy.temperature", s.temperature, s.temperature > 0, "> 0"),
            ("strategy.proj_dim", s.proj_dim, s.proj_dim >= 1, ">= 1"),
            ("strategy.proj_hidden", s.proj_hidden, s.proj_hidden >= int(not linear_head),
             ">= 0 (0: a linear head)" if linear_head else ">= 1"),
        )  # fmt: skip

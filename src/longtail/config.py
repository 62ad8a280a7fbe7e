"""Typed run configuration: the one home of every default.

A recipe is a YAML file holding only what differs from these defaults; command-line overrides are
``key=value`` pairs with dotted keys (``optim.lr=0.05``). Both are merged onto the dataclasses below
with OmegaConf, which rejects unknown keys and wrong types; :func:`validate` then checks the values.
Every problem becomes a one-line :class:`~longtail.errors.LongtailError`.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from longtail.errors import LongtailError
from longtail.text_files import read_utf8_text


@dataclass
class DataConfig:
    """Which images, and which long-tailed subset of the training split."""

    # cifar10 | cifar100 | fashion_mnist | mnist | imagefolder | split_list | pack
    dataset: str = "cifar10"
    root: str = "../shared/data/cifar10-jpeg"  # relative paths resolve against the current folder
    # split_list: the published lists (`relative/path label` lines, relative to data.root); unset:
    # <root>/<split>.txt. val is held-out data for choices (tau-norm's tau), test the reported split
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None
    channels: int | None = None  # 1 or 3; None keeps the dataset's own (1 for MNIST-likes)
    image_size: int | None = None  # split_list only: resize the shorter side, then centre-crop
    # (streaming: the training crop and the evaluation crop, 224 for the ImageNet-scale papers)
    # where the training set lives: device (decoded once, held as uint8 on the device), stream
    # (files decoded per batch by DataLoader workers), auto (stream when the device copy would not
    # fit in half the free memory; the estimate is printed)
    loader: str = "auto"
    workers: int | None = None  # stream: decoding workers a process; None: min(8, CPUs / processes)
    eval_resize: int | None = None  # stream: shorter side before the centre crop; None: 256/224 x
    cache_dir: str | None = "data/cache"  # decoded uint8 arrays are cached here (null: no cache)
    imbalance_ratio: float = 100.0  # r = n_max / n_min; 1 gives a balanced set
    profile: str = "exp"  # exp: n_c = floor(n_max * r^(-c/(C-1))); step: half n_max, half n_max / r
    n_max: int | None = None  # largest class; default: the largest class of the full training split
    total: int | None = None  # fixed total size (same profile shape), for equal-size studies
    # shuffle: LDAM-DRW's seeded per-class shuffle; first: source order; none: the training split
    # as given, every image (a naturally long-tailed published split: ImageNet-LT, Places-LT, iNat)
    subset_rule: str = "shuffle"
    subset_seed: int = 0
    index_file: str | None = None  # reuse a saved lt_index.json instead of building the subset
    test_limit: int | None = None  # evaluate on N test images spread over the split (quick runs)


@dataclass
class AugmentConfig:
    """Training-view augmentation, applied on whole batches on the device (per-sample parameters)."""

    crop: str = "pad"  # pad (pad-and-crop) | resized (RandomResizedCrop) | none
    padding: int = 4
    pad_mode: str = "zeros"  # zeros (torchvision RandomCrop(padding=4), LDAM-DRW) | reflect
    resized_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    flip: bool = True
    jitter: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # b, c, s, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.0


@dataclass
class ModelConfig:
    name: str = "resnet32"
    classifier: str = "linear"  # linear | cosine
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {stem: cifar} for resnet18
    # a torchvision-format state dict to start from (ImageNet weights for Places-LT); the
    # classifier is taken only when it fits (same classes), else trained from its initialisation
    pretrained: str | None = None


@dataclass
class LossConfig:
    """Classification loss; ``reweight_epoch`` switches on class-balanced weights (DRW, Cao et al.)."""

    name: str = "ce"  # ce | focal | class_balanced | ldam | logit_adjusted | balanced_softmax
    gamma: float = 1.0  # focal and class-balanced focal (LDAM-DRW's focal default)
    cb_type: str = "softmax"  # class_balanced: softmax | sigmoid | focal (Cui et al. 2019)
    beta: float = 0.9999  # class-balanced weights (1 - beta) / (1 - beta^n_c), normalised to sum C
    max_margin: float = 0.5  # LDAM: largest margin (the rarest class's)
    scale: float = 30.0  # LDAM: logit scale s on a cosine classifier
    tau: float = 1.0  # logit adjustment strength
    reweight: str = "none"  # none | class_balanced (DRW with reweight_epoch > 0)
    reweight_epoch: int = 0  # epoch (0-based) from which the weights apply; 0 = from the start


@dataclass
class OptimConfig:
    """The optimiser (longtail.optim.optimizers): sgd | adamw | lars (large-batch SSL)."""

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9  # sgd and lars
    nesterov: bool = False  # sgd only
    weight_decay: float = 2e-4  # sgd / lars: L2 in the gradient; adamw: decoupled
    # no weight decay on biases and norm parameters (1-D tensors); under lars no adaptation either
    no_decay_1d: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    eps: float = 1.0e-8  # adamw
    lars_eta: float = 0.001  # lars: the trust coefficient (SimCLR)


@dataclass
class ScheduleConfig:
    """Learning-rate factor per step: linear warm-up, then step decay or cosine."""

    kind: str = "step"  # step | cosine | constant
    warmup_epochs: float = 5.0
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = (
        0.01  # step: factor applied at each milestone (LDAM-DRW: x0.01 at 160, x1e-4 at 180)
    )
    min_lr_factor: float = 0.0  # cosine floor, as a fraction of optim.lr
    # train.epochs unlike the recipe's: milestones, warm-up, DRW/DRS epochs scale with it
    # (longtail.epoch_events); false keeps them as written
    scale_with_epochs: bool = True


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    sampler: str = "random"  # random | class_balanced | sqrt | progressive (Kang et al. 2020)
    resample_epoch: int | None = None  # DRS: class-balanced sampling from this epoch (0-based)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = (
        "auto"  # auto (bf16 on GPU and on CPUs with native bf16, else fp32) | fp32 | bf16
    )
    channels_last: bool = True  # NHWC activations: faster on GPU, and on CPU (ResNet-20: +35%)
    compile: bool = False
    threads: int = 0  # CPU threads; 0 = torch's default (all cores, or OMP_NUM_THREADS)
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke tests)
    # also checkpoint every N steps inside an epoch (large-scale epochs are long); a resume from
    # such a checkpoint continues at the next batch exactly. null: at epoch ends only
    checkpoint_every_steps: int | None = None
    progress: bool = True
    sync_bn: bool = True  # under torchrun (W > 1): BatchNorm over the global batch, as one process


@dataclass
class StrategyConfig:
    """How a run is staged. ``hybrid``: contrastive + class-balanced CE branches (Wang et al. 2021);
    ``kcl``: KCL stage 1, MoCo-style key encoder and labelled queue (Kang et al. 2021); ``simsiam``,
    ``simclr``, ``moco`` (v2): self-supervised pre-training; ``supcon``: SupCon pre-training alone."""

    name: str = "supervised"  # supervised | hybrid | kcl | simsiam | simclr | supcon | moco
    contrastive: str = "supcon"  # hybrid branch loss: supcon | psc | mpsc | ce (the CE-CE ablation)
    temperature: float = (
        0.1  # SC 0.1; PSC 1.0 on CIFAR-10, 0.1 on CIFAR-100 (Hybrid §4.2); KCL 0.07
    )
    num_prototypes: int = 2  # MPSC prototypes per class
    # hybrid SC: at most this many same-class positives drawn per anchor each step, besides its other
    # view (the Hybrid paper's iNat setting, value not given); null: every same-class view (SupCon)
    positives: int | None = None
    proj_hidden: int = 512  # projection head: features -> hidden -> proj_dim; kcl: 0 = linear head
    proj_dim: int = 128
    proj_batch_norm: bool = False
    curriculum: str = "parabolic"  # parabolic 1-(t/T)^2 (CIFAR) | linear 1-t/T (iNat) | fixed
    fixed_alpha: float = 0.5  # alpha when curriculum=fixed (the no-curriculum ablation)
    batch_norm: str = "joint"  # joint: one forward of all views | separate: one per branch
    ce_sampler: str = "class_balanced"  # the CE branch's sampler
    contrastive_sampler: str = "random"  # the contrastive branch's (Table 5: PSC-CB)
    jitter_views: list[bool] = field(
        default_factory=lambda: [False, True]
    )  # views with augment.jitter
    k: int = 6  # kcl: positives drawn per anchor from the queue (BalFeat --posk 6)
    queue_size: int = 4096  # kcl: labelled key queue length (BalFeat 65536 on ImageNet); >= batch
    key_momentum: float = 0.999  # kcl / moco: EMA momentum m of the key encoder (MoCo)
    proj_layers: int = 2  # simsiam projector depth: 2 on CIFAR (Imbalanced-SSL), 3 on ImageNet
    pred_hidden: int = 512  # simsiam predictor bottleneck (SimSiam: 2048 -> 512 -> 2048)


@dataclass
class SamConfig:
    """Sharpness-aware minimisation (Foret et al. 2021), adaptive (Kwon et al. 2021), and rwSAM's
    re-weighted perturbation (Liu et al. 2022). ``rho = 0`` switches SAM off."""

    rho: float = (
        0.0  # perturbation radius; Imbalanced-SSL: 0.5 (KDE script), 7.0 (exp weights, ASAM)
    )
    adaptive: bool = False  # ASAM: perturbation scaled by |w| + eta
    eta: float = 0.0
    weights: str = "none"  # none (plain SAM) | kde (rwSAM, label-free) | label (oracle ablation)
    power: float = 1.0  # w_i ~ density_i^-power (kde) or n_{y_i}^-power (label)
    refresh_every: int = 5  # kde: weights re-estimated every N epochs; 1 until the first estimate
    bandwidth: float | None = None  # kde: Gaussian bandwidth on unit features; None: kNN median
    neighbors: int = 10  # kde: the bandwidth is the median distance to the N-th neighbour
    max_weight: float = 10.0  # kde: weights clipped at this multiple of their mean
    sync_first: bool = True  # under torchrun: synchronise the perturbation pass's gradients too


@dataclass
class ProbeConfig:
    """Frozen-representation evaluation after training: linear probes, kNN and balancedness.

    The balanced probe trains on the dataset's full training split (every class equally, capped by
    ``balanced_per_class``); the long-tailed probe on the run's own subset; the OOD probe on another
    dataset resized to the training images' size and channels. All test on the matching test split.
    """

    enabled: bool = True
    balanced_per_class: int | None = None  # cap per class of the balanced probe set; None = all
    long_tailed: bool = True  # also probe with the long-tailed training subset
    knn_k: int = 200  # kNN monitor of InstDisc / SimSiam CIFAR: k = 200, tau = 0.1
    knn_temperature: float = 0.1
    iterations: int = 100  # L-BFGS iterations of the logistic-regression probe
    weight_decay: float = 1.0e-4
    ood: str | None = (
        None  # another dataset for an out-of-domain probe: fashion_mnist | cifar10 | ...
    )
    ood_root: str = "data/fashion-mnist"
    ood_per_class: int | None = None  # cap per class of the OOD probe's training set
    # auto: a shortened run probes sets sized to it (longtail.eval.probe_budget); full: as above
    size: str = "auto"


@dataclass
class InitConfig:
    """Start from another run's checkpoint (decoupled stage 2: cRT, LWS; two-stage training)."""

    run: str | None = None  # the source run folder; its lt_index.json becomes data.index_file
    freeze: str = "none"  # none | backbone (cRT) | all_but_scales (LWS)
    reset_classifier: bool = False  # re-initialise the classifier after loading (cRT)


@dataclass
class LogConfig:
    """Where a run's per-epoch numbers go besides metrics.jsonl."""

    tensorboard: bool = False  # TensorBoard scalars in <run>/tensorboard (pip install tensorboard)


@dataclass
class EvalConfig:
    every: int = 1  # evaluate on the test set every N epochs (and always after the last)
    batch_size: int = 1024
    many_threshold: int = 100  # many: > 100 training images
    few_threshold: int = 20  # few: < 20 training images
    posthoc_tau: float | None = None  # post-hoc logit adjustment at test time (Menon et al. 2021)
    tau_norm: float | None = None  # tau-normalised classifier, bias dropped (Kang et al. 2020)


@dataclass
class PaperConfig:
    top1: float | None = None
    source: str | None = None


@dataclass
class Config:
    name: str = "run"
    method: str | None = None  # the results-table method name (CONVENTIONS.md), e.g. "CE-DRW"
    recipe: str | None = None  # set by load_config: the recipe file this run came from
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    init: InitConfig = field(default_factory=InitConfig)
    sam: SamConfig = field(default_factory=SamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)


_SECTIONS = tuple(f.name for f in fields(Config) if is_dataclass(f.default_factory))  # type: ignore[arg-type]

CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": (
        "cifar10",
        "cifar100",
        "fashion_mnist",
        "mnist",
        "imagefolder",
        "split_list",
        "pack",
    ),
    "data.profile": ("exp", "step"),
    "data.subset_rule": ("shuffle", "first", "none"),
    "data.loader": ("auto", "device", "stream"),
    "augment.crop": ("pad", "resized", "none"),
    "augment.pad_mode": ("zeros", "reflect"),
    "model.classifier": ("linear", "cosine"),
    "loss.name": ("ce", "focal", "class_balanced", "ldam", "logit_adjusted", "balanced_softmax"),
    "loss.cb_type": ("softmax", "sigmoid", "focal"),
    "loss.reweight": ("none", "class_balanced"),
    "optim.name": ("sgd", "adamw", "lars"),
    "schedule.kind": ("step", "cosine", "constant"),
    "train.sampler": ("random", "class_balanced", "sqrt", "progressive"),
    "train.precision": ("auto", "fp32", "bf16"),
    "strategy.name": ("supervised", "hybrid", "kcl", "simsiam", "simclr", "supcon", "moco"),
    "strategy.contrastive": ("supcon", "psc", "mpsc", "ce"),
    "strategy.curriculum": ("parabolic", "linear", "fixed"),
    "strategy.batch_norm": ("joint", "separate"),
    "strategy.ce_sampler": ("random", "class_balanced", "sqrt"),
    "strategy.contrastive_sampler": ("random", "class_balanced", "sqrt"),
    "init.freeze": ("none", "backbone", "all_but_scales"),
    "sam.weights": ("none", "kde", "label"),
    "probe.size": ("auto", "full"),
}


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    if is_dataclass(node):
        keys: list[str] = []
        for f in fields(node):
            keys += _leaf_keys(getattr(node, f.name), f"{prefix}{f.name}.")
        return keys
    return [prefix.rstrip(".")]


def _one_line(err: OmegaConfBaseException, source: str) -> LongtailError:
    """Turn an OmegaConf error into one line naming the key, the problem and the fix."""
    key = getattr(err, "full_key", None) or ""
    msg = str(err).splitlines()[0]
    if "not in" in msg or "Key '" in msg and "not" in msg:
        suggestion = difflib.get_close_matches(key, _leaf_keys(Config()), n=1)
        hint = f" (did you mean '{suggestion[0]}'?)" if suggestion else ""
        return LongtailError(
            f"unknown config key '{key}' in {source}{hint}: remove it or fix its spelling"
        )
    return LongtailError(f"bad value for '{key}' in {source}: {msg}; fix the value")


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item or item.startswith("="):
        raise LongtailError(f"override '{item}' is not key=value: write e.g. optim.lr=0.05")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LongtailError(f"override '{key}' goes below a plain value: check the key")
    node[parts[-1]] = value


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names a key twice (PyYAML would keep the last silently)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (two ``train:`` blocks)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(
                    f"key '{key}' appears twice (lines {seen[key]} and {line}): keep one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a recipe, a run's config.yaml), or one-line errors."""
    if not path.is_file():
        raise LongtailError(
            f"{what} {path} does not exist: pass a YAML file, e.g. recipes/demo.yaml"
        )
    text = read_utf8_text(  # a byte-order mark is read, not refused
        path, lambda n, b: f"{what} {path}:{n} is not UTF-8 text (byte 0x{b:02x}): save it as UTF-8"
    )
    try:
        loaded = yaml.load(text, Loader=UniqueKeyLoader) or {}  # noqa: S506
    except DuplicateKeyError as err:
        raise LongtailError(f"{what} {path}: {err}") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise LongtailError(f"{what} {path} is not valid YAML{where}: fix its syntax") from None
    if not isinstance(loaded, dict):
        raise LongtailError(f"{what} {path} must be a mapping of keys: see recipes/demo.yaml")
    return loaded


def recipe_layers(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """A recipe and the recipes it inherits from, as merge layers, the farthest base first.

    ``base: other.yaml`` (a path relative to the recipe's own folder) inherits every key of that
    recipe; this recipe's keys then merge over it (mappings key by key, lists and values replaced).
    A base may have its own base. A missing base or a cycle is a one-line error.
    """
    mapping = read_yaml_mapping(path, "recipe")
    base = mapping.pop("base", None)
    if base is None:
        return [(f"recipe {path}", mapping)]
    if not isinstance(base, str):
        raise LongtailError(f"base in recipe {path} must be a path (e.g. base: ce_r100.yaml)")
    parent = (path.parent / base).resolve()
    if parent in _seen or parent == path.resolve():
        raise LongtailError(
            f"recipe {path} inherits from itself through base: {base}: break the cycle"
        )
    if not parent.is_file():
        raise LongtailError(
            f"base: {base} in recipe {path} does not exist ({parent}): the path is relative to"
            " the recipe's folder"
        )
    return [*recipe_layers(parent, (*_seen, path.resolve())), (f"recipe {path}", mapping)]


def overrides_tree(overrides: list[str], allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``["a.b=1", ...]`` -> ``{"a": {"b": 1}}``; with ``allowed``, only keys under those prefixes."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, value = _parse_override(item)
        if allowed is not None and not any(key == p or key.startswith(p + ".") for p in allowed):
            raise LongtailError(
                f"override '{key}' cannot be changed here: only {', '.join(allowed)} can"
            )
        _set_dotted(tree, key, value)
    return tree


def merge_config(
    layers: list[tuple[str, dict[str, Any]]],
    overrides: Sequence[str] = (),
    validate_it: bool = True,
) -> Config:
    """Defaults <- each (source, mapping) layer in order <- ``key=value`` overrides, validated.

    Layers merge mappings key by key; an override SETS its key, so ``model.kwargs={}`` empties a
    mapping a recipe filled (``model.kwargs.width=0.5`` changes one entry). Raises LongtailError.
    """
    base: DictConfig = OmegaConf.structured(Config)
    for source, layer in layers:
        bad = [k for k, v in layer.items() if k in _SECTIONS and not isinstance(v, dict | None)]
        if bad:
            raise LongtailError(f"'{bad[0]}' in {source} must be a mapping of keys, not a value")
        try:
            base = OmegaConf.merge(base, layer)  # type: ignore[assignment]
        except OmegaConfBaseException as err:
            raise _one_line(err, source) from None
    for item in overrides:
        key, value = _parse_override(item)
        overrides_tree([item])  # the same shape checks as a layer
        if key.split(".")[0] in _SECTIONS and "." not in key and not isinstance(value, dict):
            raise LongtailError(
                f"'{key}' on the command line must be a mapping of keys, not a value"
            )
        try:
            OmegaConf.update(base, key, value, merge=False)
        except OmegaConfBaseException as err:
            raise _one_line(err, "the command line") from None
    try:
        cfg = OmegaConf.to_object(base)
    except OmegaConfBaseException as err:
        raise _one_line(err, "the config") from None
    assert isinstance(cfg, Config)
    if validate_it:  # off for a recipe read only as the reference its overrides complete
        validate(cfg)
    return cfg


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults <- recipe YAML <- ``key=value`` overrides, validated. Raises LongtailError.

    When the overrides change a recipe's ``train.epochs``, its epoch-valued keys scale with it
    (:mod:`longtail.epoch_events`), and one line on stderr says which.
    """
    from longtail.epoch_events import scale_to_epochs

    layers: list[tuple[str, dict[str, Any]]] = []
    if recipe is not None:
        layers += recipe_layers(Path(recipe))
        layers.append(("the recipe path", {"recipe": str(recipe)}))
    cfg = merge_config(layers, overrides or ())
    given = {_parse_override(o)[0] for o in overrides or ()}
    if recipe is None or not ({"train.epochs", "train"} & given):  # nothing to scale from
        return cfg
    as_written = merge_config(layers, validate_it=False)
    cfg, changes = scale_to_epochs(cfg, as_written, given)
    if changes:
        validate(cfg)
        if os.environ.get("RANK", "0") == "0":  # once under torchrun
            print(
                f"config: train.epochs={cfg.train.epochs} (the recipe's {as_written.train.epochs}):"
                f" scaled {'; '.join(changes)} (schedule.scale_with_epochs=false keeps them)"
                + (
                    " -- a 1-epoch run ends before epoch 1: it reaches none of these events"
                    if cfg.train.epochs == 1
                    else ""
                ),
                file=sys.stderr,
            )
    return cfg


def validate(cfg: Config) -> None:
    """Check values that types alone cannot: choices, ranges, cross-field consistency."""
    from longtail.config_checks import check_values

    check_values(cfg)  # finite numbers, seeds, momentum: before any rule reads them
    for key, options in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in options:
            raise LongtailError(
                f"{key}={value!r} is not one of {', '.join(options)}: pick one of them"
            )
    ratio = cfg.data.imbalance_ratio
    if not math.isfinite(ratio) or ratio < 1:
        raise LongtailError(
            f"data.imbalance_ratio must be >= 1 (got {ratio}): r = n_max / n_min, 1 is balanced"
        )
    lists = [n for n in ("train_list", "val_list", "test_list") if getattr(cfg.data, n)]
    if lists and cfg.data.dataset != "split_list":
        raise LongtailError(
            f"data.{lists[0]} names a split list, which only dataset split_list reads (got"
            f" data.dataset={cfg.data.dataset}): set data.dataset=split_list or drop data.{lists[0]}"
        )
    if cfg.strategy.positives is not None and not (
        cfg.strategy.positives >= 1
        and cfg.strategy.name == "hybrid"
        and cfg.strategy.contrastive == "supcon"
    ):
        raise LongtailError(
            f"strategy.positives={cfg.strategy.positives} applies to hybrid SC (strategy.name=hybrid,"
            " strategy.contrastive=supcon) and must be >= 1: fix it or set it to null"
        )
    positive = {
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "optim.lr": cfg.optim.lr,
        "eval.every": cfg.eval.every,
        "eval.batch_size": cfg.eval.batch_size,
    }
    for key, value in positive.items():
        if not value > 0:
            raise LongtailError(f"{key} must be > 0 (got {value}): fix the recipe or override")
    if cfg.optim.weight_decay < 0 or cfg.optim.momentum < 0:
        raise LongtailError("optim.weight_decay and optim.momentum must be >= 0: fix the recipe")
    if cfg.optim.nesterov and cfg.optim.name != "sgd":
        raise LongtailError(
            f"optim.nesterov applies to sgd, not optim.name={cfg.optim.name}: drop it"
        )
    betas = cfg.optim.betas
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise LongtailError(
            f"optim.betas must be two values in [0, 1) (got {betas}): e.g. [0.9, 0.999]"
        )
    if not (cfg.optim.eps > 0 and cfg.optim.lars_eta > 0):
        raise LongtailError("optim.eps and optim.lars_eta must be > 0: e.g. 1e-8 and 0.001")
    if not 0 <= cfg.loss.beta < 1:
        raise LongtailError(f"loss.beta must be in [0, 1) (got {cfg.loss.beta}): e.g. 0.9999")
    if cfg.schedule.warmup_epochs < 0:
        raise LongtailError(
            f"schedule.warmup_epochs must be >= 0 (got {cfg.schedule.warmup_epochs})"
        )
    if sorted(cfg.schedule.milestones) != list(cfg.schedule.milestones):
        raise LongtailError("schedule.milestones must be increasing epochs, e.g. [160, 180]")
    if len(cfg.augment.jitter) != 4 or any(v < 0 for v in cfg.augment.jitter):
        raise LongtailError(
            "augment.jitter takes 4 values >= 0: [brightness, contrast, saturation, hue]"
        )
    for key in ("augment.jitter_p", "augment.grayscale_p"):
        section, name = key.split(".")
        p = getattr(getattr(cfg, section), name)
        if not 0 <= p <= 1:
            raise LongtailError(f"{key} must be a probability in [0, 1] (got {p})")
    optional_positive = {
        "data.total": cfg.data.total,
        "data.test_limit": cfg.data.test_limit,
        "data.n_max": cfg.data.n_max,
        "data.image_size": cfg.data.image_size,
        "train.max_steps_per_epoch": cfg.train.max_steps_per_epoch,
        "train.checkpoint_every_steps": cfg.train.checkpoint_every_steps,
        "data.eval_resize": cfg.data.eval_resize,
    }
    for key, value in optional_positive.items():
        if value is not None and value < 1:
            raise LongtailError(f"{key} must be >= 1 or null (got {value})")
    if cfg.data.workers is not None and cfg.data.workers < 0:
        raise LongtailError(f"data.workers must be >= 0 or null (got {cfg.data.workers})")
    if cfg.data.channels not in (None, 1, 3):
        raise LongtailError(f"data.channels must be 1, 3 or null (got {cfg.data.channels})")
    if cfg.train.threads < 0:
        raise LongtailError(f"train.threads must be >= 0 (got {cfg.train.threads}); 0 = default")
    scale = cfg.augment.resized_scale
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise LongtailError(f"augment.resized_scale must be [low, high] in (0, 1] (got {scale})")
    if cfg.augment.jitter[3] > 0.5:
        raise LongtailError(f"augment.jitter hue must be <= 0.5 (got {cfg.augment.jitter[3]})")
    if cfg.loss.reweight != "none" and cfg.loss.name not in ("ce", "focal", "ldam"):
        raise LongtailError(
            f"loss.reweight applies to ce, focal and ldam, not {cfg.loss.name}: set loss.reweight=none"
        )
    if cfg.loss.name == "ldam" and cfg.model.classifier != "cosine":
        raise LongtailError(
            "loss.name=ldam scales cosine logits by loss.scale: set model.classifier=cosine"
        )
    if cfg.loss.gamma < 0 or cfg.loss.scale <= 0 or cfg.loss.max_margin < 0:
        raise LongtailError("loss.gamma and loss.max_margin must be >= 0 and loss.scale > 0")
    if cfg.train.resample_epoch is not None and cfg.train.sampler != "random":
        raise LongtailError(
            "train.resample_epoch (DRS) switches random sampling to class-balanced: set"
            " train.sampler=random"
        )
    if cfg.strategy.name == "hybrid":
        if cfg.train.resample_epoch is not None or cfg.train.sampler != "random":
            raise LongtailError(
                "strategy.name=hybrid samples its own streams: set strategy.ce_sampler instead of"
                " train.sampler / train.resample_epoch"
            )
        if len(cfg.strategy.jitter_views) != 2:
            raise LongtailError("strategy.jitter_views takes 2 values, one per contrastive view")
        if not 0 <= cfg.strategy.fixed_alpha <= 1 or cfg.strategy.temperature <= 0:
            raise LongtailError("strategy.fixed_alpha must be in [0, 1] and temperature > 0")
    if cfg.strategy.name in REPRESENTATION:
        _validate_pretraining(cfg)
    if cfg.strategy.name in ("kcl", "moco"):
        _validate_kcl(cfg)
    _validate_sam(cfg)
    _validate_probe(cfg)
    _validate_init(cfg)
    if cfg.eval.few_threshold > cfg.eval.many_threshold:
        raise LongtailError("eval.few_threshold must not exceed eval.many_threshold (20 <= 100)")
    if not cfg.name or "/" in cfg.name or cfg.name in (".", "..") or "\\" in cfg.name:
        raise LongtailError(
            f"name={cfg.name!r} must be one folder name (no '/'): e.g. name=ce-r100"
        )


SELF_SUPERVISED = ("simsiam", "simclr", "moco")  # labels have no effect on what they learn
# strategies that learn a representation only: their classifier is never trained
REPRESENTATION = (*SELF_SUPERVISED, "supcon", "kcl")


def _require(*checks: tuple[str, Any, bool, str]) -> None:
    """``(key, value, ok, rule)`` each: the first failing check as one line naming its key."""
    for key, value, ok, rule in checks:
        if not ok:
            raise LongtailError(f"{key}={value} must be {rule}: fix the recipe or override")


def _validate_pretraining(cfg: Config) -> None:
    s = cfg.strategy
    if cfg.train.compile:
        raise LongtailError(
            f"train.compile is not wired for strategy.name={s.name} (supervised and hybrid steps"
            " only): set train.compile=false"
        )
    if cfg.train.resample_epoch is not None or cfg.train.sampler != "random":
        raise LongtailError(
            f"strategy.name={s.name} pre-trains on instance-sampled batches: set"
            " train.sampler=random and drop train.resample_epoch (class-balanced training of a"
            " classifier is a second stage)"
        )
    queue = s.name in ("kcl", "moco")  # their head may be linear: proj_hidden=0
    _require(
        ("strategy.temperature", s.temperature, s.temperature > 0, "> 0"),
        ("strategy.proj_dim", s.proj_dim, s.proj_dim >= 1, ">= 1"),
        ("strategy.proj_hidden", s.proj_hidden, s.proj_hidden >= int(not queue),
         ">= 0 (0: a linear head)" if queue else ">= 1"),
        ("strategy.pred_hidden", s.pred_hidden, s.pred_hidden >= 1, ">= 1"),
    )  # fmt: skip
    if (
        cfg.loss != LossConfig()
        or cfg.eval.tau_norm is not None
        or cfg.eval.posthoc_tau is not None
    ):
        raise LongtailError(
            f"strategy.name={s.name} trains no classifier, so loss.*, eval.tau_norm and"
            " eval.posthoc_tau have no effect: drop them (a classifier is a second stage)"
        )
    if s.proj_layers not in (2, 3):
        raise LongtailError(
            f"strategy.proj_layers={s.proj_layers} must be 2 (CIFAR) or 3 (ImageNet)"
        )


def _validate_sam(cfg: Config) -> None:
    sam = cfg.sam
    _require(
        ("sam.rho", sam.rho, sam.rho >= 0, ">= 0 (0 turns SAM off)"),
        ("sam.eta", sam.eta, sam.eta >= 0, ">= 0"),
        ("sam.power", sam.power, sam.power >= 0, ">= 0"),
        ("sam.refresh_every", sam.refresh_every, sam.refresh_every >= 1, ">= 1"),
        ("sam.neighbors", sam.neighbors, sam.neighbors >= 1, ">= 1"),
        ("sam.max_weight", sam.max_weight, sam.max_weight >= 1, ">= 1"),
    )
    if sam.rho == 0 and (sam.weights != "none" or sam.adaptive):
        raise LongtailError(
            f"sam.weights={sam.weights} / sam.adaptive need a perturbation: set sam.rho > 0"
            " (e.g. 0.5)"
        )
    if sam.rho > 0 and cfg.strategy.name in ("kcl", "moco", "hybrid"):
        raise LongtailError(
            f"sam.rho > 0 with strategy.name={cfg.strategy.name}: its key encoder, queue or"
            " curriculum would step twice per batch; use SAM with supervised, simsiam, simclr, supcon"
        )
    if sam.weights != "none" and cfg.strategy.name not in ("simsiam", "simclr", "supcon"):
        raise LongtailError(
            f"sam.weights={sam.weights} re-weights a pre-training loss: use it with strategy.name"
            " simsiam, simclr or supcon, or set sam.weights=none for plain SAM"
        )
    if sam.bandwidth is not None and sam.bandwidth <= 0:
        raise LongtailError(f"sam.bandwidth must be > 0 or null (got {sam.bandwidth})")


# datasets an out-of-domain probe can read from a root folder alone
OOD_DATASETS = ("cifar10", "cifar100", "fashion_mnist", "mnist", "imagefolder", "pack")


def _validate_probe(cfg: Config) -> None:
    p = cfg.probe
    for key, value in (
        ("probe.balanced_per_class", p.balanced_per_class),
        ("probe.ood_per_class", p.ood_per_class),
    ):
        if value is not None and value < 1:
            raise LongtailError(f"{key} must be >= 1 or null (got {value})")
    _require(
        ("probe.knn_k", p.knn_k, p.knn_k >= 1, ">= 1"),
        ("probe.knn_temperature", p.knn_temperature, p.knn_temperature > 0, "> 0"),
        ("probe.iterations", p.iterations, p.iterations >= 1, ">= 1"),
        ("probe.weight_decay", p.weight_decay, p.weight_decay >= 0, ">= 0"),
    )
    if p.ood is not None and p.ood not in OOD_DATASETS:
        raise LongtailError(
            f"probe.ood={p.ood!r} is not one of {', '.join(OOD_DATASETS)}: pick one (its data at"
            " probe.ood_root)"
        )


def _validate_kcl(cfg: Config) -> None:
    s = cfg.strategy
    _require(
        ("strategy.k", s.k, s.name != "kcl" or s.k >= 1, ">= 1 (KCL: 6)"),
        ("strategy.key_momentum", s.key_momentum, 0 <= s.key_momentum <= 1, "in [0, 1] (0.999)"),
    )
    if s.queue_size < cfg.train.batch_size:
        raise LongtailError(
            f"strategy.queue_size={s.queue_size} is below train.batch_size={cfg.train.batch_size}:"
            " a queue must hold at least one batch of keys; raise it (e.g. 4096)"
        )


def _validate_init(cfg: Config) -> None:
    init = cfg.init
    # A missing init.run is checked when training starts (decoupling.require_source), so a
    # stage-2 recipe still loads for `longtail data` and the recipe checks.
    if init.freeze == "all_but_scales" and init.reset_classifier:
        raise LongtailError(
            "init.freeze=all_but_scales (LWS) scales the source's classifier: set"
            " init.reset_classifier=false"
        )
    if init.freeze != "none" and cfg.strategy.name != "supervised":
        raise LongtailError(
            f"init.freeze={init.freeze} re-trains a classifier: set strategy.name=supervised"
        )
    if cfg.eval.tau_norm is not None and cfg.eval.posthoc_tau is not None:
        raise LongtailError("eval.tau_norm and eval.posthoc_tau are two corrections: set one")


def to_dict(cfg: Config) -> dict[str, Any]:
    return asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_dict(tree: dict[str, Any], source: str = "a saved config") -> Config:
    """Rebuild a Config from a resolved dump (a run folder's config.yaml)."""
    return merge_config([(source, tree)])

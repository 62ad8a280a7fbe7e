"""Sharpness-aware minimisation as one functional training step: SAM, adaptive SAM and rwSAM.

SAM (Foret et al. 2021, eq. 2) moves the weights to the approximate worst point of a rho-ball,
``epsilon_hat = rho * g / ||g||_2``, and descends with the gradient taken there. Adaptive SAM (ASAM,
Kwon et al. 2021) measures the ball in the scale-invariant metric ``T_w = |w| + eta`` (element-wise),
giving ``epsilon_hat = rho * T_w^2 g / ||T_w g||_2``. Both norms run over all parameters jointly.

rwSAM (Liu, HaoChen, Gaidon, Ma, ICLR 2022) splits the two losses: the perturbation is computed
from a per-example *weighted* loss ``L_w`` (rare examples weighted up), the descent gradient from
the *unweighted* loss at the perturbed point. Because epsilon is normalised, only the relative
weights matter. :func:`sam_step` takes the two losses as separate closures; plain SAM passes the
same closure twice.

BatchNorm: the first (perturbation) pass is the one that updates running statistics; the second
pass still normalises with batch statistics but leaves the running statistics and
``num_batches_tracked`` exactly as they were (davda54/sam's README gives the same advice).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from longtail.errors import LongtailError

_NORM_EPS = 1e-12  # keeps the division finite when every gradient is zero (epsilon is then 0)


def sam_perturbation(
    params: Iterable[Tensor], rho: float, adaptive: bool = False, eta: float = 0.0
) -> list[Tensor | None]:
    """The SAM / ASAM ascent step ``epsilon_hat`` for each parameter, from its current ``.grad``.

    ``e_p = rho * T_p^2 * g_p / (||T g||_2 + 1e-12)`` with ``T_p = |p| + eta`` when ``adaptive``,
    else ``T_p = 1``; ``||T g||_2`` is one norm over all parameters together. Returns one tensor of
    ``p``'s shape per parameter, or ``None`` where ``p.grad`` is ``None``. All-zero gradients give
    zero perturbations. Pure: neither the parameters nor their gradients are changed.
    """
    check_radius(rho, eta)
    params = list(params)
    metric: list[Tensor | None] = []  # T_p, None for plain SAM (T = 1) or when p has no grad
    scaled: list[Tensor | None] = []  # T_p * g_p
    for p in params:
        grad = None if p.grad is None else p.grad.detach()
        t = p.detach().abs() + eta if adaptive and grad is not None else None
        metric.append(t)
        scaled.append(grad if t is None or grad is None else t * grad)
    present = [s for s in scaled if s is not None]
    if not present:
        return [None] * len(params)
    device, dtype = present[0].device, present[0].dtype
    norms = torch.stack([torch.linalg.vector_norm(s).to(device, dtype) for s in present])
    factor = rho / (torch.linalg.vector_norm(norms) + _NORM_EPS)
    perturbations: list[Tensor | None] = []
    for t, s in zip(metric, scaled, strict=True):
        if s is None:
            perturbations.append(None)
            continue
        direction = s if t is None else t * s  # T^2 g = T (T g)
        perturbations.append(direction * factor.to(s.device, s.dtype))
    return perturbations


@contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Forwards inside leave every BatchNorm's running statistics exactly as they were.

    Momentum is set to 0 (no update, also for the cumulative ``momentum=None`` mode) and the
    running mean, variance and ``num_batches_tracked`` are copied back on exit, so even a non-finite
    batch cannot leak in. Training-mode layers still normalise with the batch's own statistics.
    """
    saved: list[tuple[_BatchNorm, float | None, dict[str, Tensor]]] = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            buffers = {
                name: buf.detach().clone()
                for name, buf in module.named_buffers(recurse=False)
                if name in ("running_mean", "running_var", "num_batches_tracked")
            }
            saved.append((module, module.momentum, buffers))
            module.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for module, momentum, buffers in saved:
                module.momentum = momentum
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def sam_step(
    optimizer: torch.optim.Optimizer,
    perturb_loss: Callable[[], Tensor],
    update_loss: Callable[[], Tensor],
    rho: float,
    adaptive: bool = False,
    eta: float = 0.0,
    model: nn.Module | None = None,
) -> Tensor:
    """One SAM / ASAM / rwSAM step; returns the update loss (at the perturbed weights), detached.

    1. ``L_w = perturb_loss()`` at the current weights w, backward -> g.
    2. ``w <- w + e`` with ``e = sam_perturbation(...)`` over the optimiser's parameters with a grad.
    3. ``L = update_loss()`` at w + e (BatchNorm running statistics frozen when ``model`` is
       given), backward -> the gradient used for the update.
    4. w is restored bit-for-bit from a saved copy, then ``optimizer.step()``: the base optimiser
       (SGD with its momentum and weight decay) applies the gradient taken at w + e to w.

    ``perturb_loss`` builds rwSAM's weighted loss (or the plain loss for SAM); ``update_loss`` the
    unweighted loss. Both closures run their own forward pass. Parameters without a gradient after
    the first pass are not perturbed.
    """
    check_radius(rho, eta)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.zero_grad(set_to_none=True)
    with torch.enable_grad():
        perturb_loss().backward()
    perturbations = sam_perturbation(params, rho, adaptive, eta)
    originals: list[tuple[Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for p, e in zip(params, perturbations, strict=True):
                if e is not None:
                    originals.append((p, p.detach().clone()))
                    p.add_(e)
        optimizer.zero_grad(set_to_none=True)
        frozen = frozen_batchnorm_stats(model) if model is not None else nullcontext()
        with frozen, torch.enable_grad():
            loss = update_loss()
            loss.backward()
    finally:
        # a copy, not p -= e: floating-point subtraction would not give w back exactly
        with torch.no_grad():
            for p, original in originals:
                p.copy_(original)
    optimizer.step()
    return loss.detach()


def check_radius(rho: float, eta: float) -> None:
    if not (math.isfinite(rho) and rho > 0):
        raise LongtailError(
            f"sam rho must be > 0 and finite, got {rho}: set sam.rho to a positive radius "
            "(e.g. 0.05 for SAM, 0.5-2 for adaptive SAM), or 0 in the config to switch SAM off"
        )
    if not (math.isfinite(eta) and eta >= 0):
        raise LongtailError(f"sam eta must be >= 0 and finite, got {eta}: set sam.eta to 0 or more")

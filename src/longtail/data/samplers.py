"""Device-resident index samplers: instance-, class- and square-root-balanced batches.

Kang et al. 2020, "Decoupling Representation and Classifier for Long-Tailed Recognition", eq. 1:
a class c is drawn with probability p_c = n_c^q / sum_j n_j^q, then an instance uniformly within it.
q = 1 is instance-balanced (plain random sampling), q = 0 class-balanced, q = 1/2 square-root.
Progressively-balanced sampling (eq. 2) mixes the two ends, p^PB = (1 - t/T) p^IB + (t/T) p^CB,
with t/T set per epoch by :meth:`IndexSampler.set_progress`.

A whole epoch of indices is drawn at once on the labels' device, so yielding a batch is a slice:
no host synchronisation per batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Literal, get_args

import torch

from longtail.errors import LongtailError

SamplerMode = Literal["random", "class_balanced", "sqrt", "progressive"]
SAMPLER_MODES: tuple[str, ...] = get_args(SamplerMode)
_MODE_EXPONENT: dict[str, float] = {"class_balanced": 0.0, "sqrt": 0.5}


def class_sampling_weights(counts: torch.Tensor, q: float) -> torch.Tensor:
    """Per-class probability p_c = n_c^q / sum_j n_j^q (Kang et al. 2020, eq. 1).

    Args:
        counts: [K] number of training samples per class (any numeric dtype).
        q: exponent; 1 instance-balanced, 0 class-balanced, 1/2 square-root.

    Returns:
        [K] float64 probabilities summing to 1; absent classes (n_c = 0) get exactly 0, even
        at q = 0.
    """
    counts64 = counts.to(torch.float64)
    if counts64.ndim != 1 or bool((counts64 < 0).any()) or not bool((counts64 > 0).any()):
        raise LongtailError(
            f"class counts {counts.tolist()} are invalid: pass a 1-D tensor of non-negative "
            "per-class counts with at least one positive entry"
        )
    # 0**0 == 1 in torch, so mask absent classes explicitly rather than rely on pow.
    powered = torch.where(counts64 > 0, counts64.pow(q), torch.zeros_like(counts64))
    return powered / powered.sum()


def _check_mode(mode: str) -> SamplerMode:
    if mode not in SAMPLER_MODES:
        raise LongtailError(
            f"sampler mode {mode!r} is unknown: use one of {', '.join(SAMPLER_MODES)}"
        )
    return mode  # type: ignore[return-value]


class IndexSampler:
    """Yields [B] int64 index tensors on ``labels.device``, one epoch per ``iter()``.

    ``random`` is a fresh permutation per epoch (each index exactly once). ``class_balanced`` and
    ``sqrt`` draw ``samples_per_epoch`` (default N) indices with replacement: a class with
    probability p_c (eq. 1), then a position uniformly within that class. ``progressive`` draws the
    same way with p^PB(t) = (1 - t/T) p^IB + (t/T) p^CB (eq. 2), t/T from :meth:`set_progress`
    (default 0: instance-balanced, with replacement); at t/T = 1 its draws equal ``class_balanced``.

    Resuming is exact: ``state_dict`` holds the generator state at the start of the epoch in
    progress, its progressive t/T and how many of its batches were consumed, so a restored sampler
    regenerates the same epoch and continues from the next batch. An iterator abandoned mid-epoch is
    resumed by ``load_state_dict``; a plain new ``iter()`` starts a fresh epoch instead.
    """

    def __init__(
        self,
        labels: torch.Tensor,
        num_classes: int,
        batch_size: int,
        mode: SamplerMode = "random",
        drop_last: bool = True,
        generator: torch.Generator | None = None,
        samples_per_epoch: int | None = None,
        max_batches: int | None = None,
    ) -> None:
        if labels.ndim != 1 or labels.numel() == 0 or labels.is_floating_point():
            raise LongtailError(
                f"labels of shape {tuple(labels.shape)} and dtype {labels.dtype} are invalid: "
                "pass a non-empty 1-D integer tensor of class ids"
            )
        if batch_size < 1:
            raise LongtailError(f"batch_size {batch_size} is invalid: use a positive integer")
        if max_batches is not None and max_batches < 1:
            raise LongtailError(
                f"max_batches {max_batches} is invalid: use a positive integer or None"
            )
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise LongtailError(
                f"samples_per_epoch {samples_per_epoch} is invalid: use a positive integer or None"
            )
        device = labels.device
        if generator is None:
            # Seeded from the global RNG once, so torch.manual_seed makes runs reproducible.
            seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator(device=device).manual_seed(seed)
        elif generator.device.type != device.type:
            raise LongtailError(
                f"sampler generator is on {generator.device} but labels are on {device}: "
                "create the generator with torch.Generator(device=labels.device)"
            )
        labels = labels.long()
        counts = torch.bincount(labels, minlength=num_classes)
        if counts.numel() != num_classes or bool((labels < 0).any()):
            raise LongtailError(
                f"labels lie outside [0, {num_classes}): check num_classes or the label column"
            )

        self.num_samples = labels.numel()
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.samples_per_epoch = samples_per_epoch
        self.max_batches = max_batches  # cut every epoch short (smoke tests); still resumes exactly
        self.generator = generator
        self.device = device
        self.counts = counts
        # Indices sorted by class: class c is sorted_indices[offsets[c] : offsets[c] + counts[c]].
        self.sorted_indices = torch.argsort(labels, stable=True)
        self.offsets = torch.cumsum(counts, 0) - counts
        self._class_probs = {
            m: class_sampling_weights(counts, q).to(torch.float32)
            for m, q in _MODE_EXPONENT.items()
        }
        # float64 ends of the progressive mix, so that t/T = 0 and 1 reproduce them exactly
        self._instance_probs = class_sampling_weights(counts, 1.0)
        self._balanced_probs = class_sampling_weights(counts, 0.0)
        self._progress = 0.0
        self._epoch_progress = 0.0
        self._mode: SamplerMode = _check_mode(mode)
        self._epoch = 0
        self._position = 0
        self._epoch_state: torch.Tensor | None = None
        self._epoch_mode: SamplerMode = self._mode
        self._resume = False

    @property
    def mode(self) -> SamplerMode:
        """Sampling mode used from the next epoch on."""
        return self._mode

    def set_mode(self, mode: SamplerMode) -> None:
        """Switch the sampling mode; takes effect at the next epoch (e.g. deferred re-sampling)."""
        self._mode = _check_mode(mode)

    @property
    def progress(self) -> float:
        """t/T of the progressive mode used from the next epoch on."""
        return self._progress

    def set_progress(self, t_over_T: float) -> None:
        """Set t/T in [0, 1] of progressively-balanced sampling; takes effect at the next epoch."""
        if not (math.isfinite(t_over_T) and 0.0 <= t_over_T <= 1.0):
            raise LongtailError(
                f"sampler progress {t_over_T} is outside [0, 1]: pass epoch / total_epochs"
            )
        self._progress = float(t_over_T)

    def class_probabilities(
        self, mode: SamplerMode | None = None, progress: float | None = None
    ) -> torch.Tensor | None:
        """[K] float32 class probabilities an epoch draws with (None in ``random`` mode).

        Defaults: the mode and t/T the next epoch will use.
        """
        mode = self._mode if mode is None else _check_mode(mode)
        if mode == "random":
            return None
        if mode != "progressive":
            return self._class_probs[mode]
        t = self._progress if progress is None else progress
        return ((1.0 - t) * self._instance_probs + t * self._balanced_probs).to(torch.float32)

    def draws_per_epoch(self, mode: SamplerMode | None = None) -> int:
        """Indices drawn per epoch: N in random mode, else ``samples_per_epoch`` (default N)."""
        mode = self._mode if mode is None else mode
        if mode == "random" or self.samples_per_epoch is None:
            return self.num_samples
        return self.samples_per_epoch

    def _num_batches(self, mode: SamplerMode) -> int:
        draws = self.draws_per_epoch(mode)
        batches = draws // self.batch_size if self.drop_last else -(-draws // self.batch_size)
        return batches if self.max_batches is None else min(batches, self.max_batches)

    def __len__(self) -> int:
        return self._num_batches(self._mode)

    def _draw_epoch(self, mode: SamplerMode, progress: float) -> torch.Tensor:
        """[draws] int64 indices for one epoch, consuming the generator."""
        g = self.generator
        probs = self.class_probabilities(mode, progress)
        if probs is None:
            return torch.randperm(self.num_samples, generator=g, device=self.device)
        n = self.draws_per_epoch(mode)
        cls = torch.multinomial(probs, n, replacement=True, generator=g)
        within = self.counts[cls]
        # float32 rand * n_c can round up to n_c itself for large classes; clamp keeps it in range.
        pos = (torch.rand(n, generator=g, device=self.device) * within).long()
        pos = torch.minimum(pos, within - 1)
        return self.sorted_indices[self.offsets[cls] + pos]

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._resume and self._epoch_state is not None:
            self.generator.set_state(self._epoch_state)
            mode, start, progress = self._epoch_mode, self._position, self._epoch_progress
        else:
            self._epoch_state = self.generator.get_state()
            mode, start, progress = self._mode, 0, self._progress
        self._resume = False
        self._epoch_mode = mode
        self._epoch_progress = progress
        self._position = start
        indices = self._draw_epoch(mode, progress)
        for b in range(start, self._num_batches(mode)):
            batch = indices[b * self.batch_size : (b + 1) * self.batch_size]
            self._position = b + 1
            yield batch
        self._epoch += 1
        self._position = 0
        self._epoch_state = None

    @property
    def epoch(self) -> int:
        """Number of completed epochs."""
        return self._epoch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: mode, t/T, epoch, position, generator state."""
        # An epoch whose indices were drawn (even with no batch consumed yet) is resumed from the
        # state that drew it; otherwise the next epoch starts from the current state.
        in_progress = self._epoch_state is not None
        state = self._epoch_state if self._epoch_state is not None else self.generator.get_state()
        return {
            "mode": self._mode,
            "epoch_mode": self._epoch_mode if in_progress else self._mode,
            "progress": self._progress,
            "epoch_progress": self._epoch_progress if in_progress else self._progress,
            "epoch": self._epoch,
            "position": self._position if in_progress else 0,
            "generator": state.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the next ``iter()`` continues where it left off."""
        self._mode = _check_mode(state["mode"])
        self._epoch_mode = _check_mode(state["epoch_mode"])
        # states saved before the progressive mode existed have no t/T: they never used it
        self._progress = float(state.get("progress", 0.0))
        self._epoch_progress = float(state.get("epoch_progress", self._progress))
        self._epoch = int(state["epoch"])
        self._position = int(state["position"])
        self.generator.set_state(state["generator"].clone())
        # At an epoch boundary nothing of the epoch was consumed: the next epoch is drawn fresh
        # from the restored generator, so a mode or t/T set after loading (DRS, progressive)
        # applies to it exactly as in an uninterrupted run.
        at_boundary = self._position == 0
        self._epoch_state = None if at_boundary else state["generator"].clone()
        self._resume = not at_boundary

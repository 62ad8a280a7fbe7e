"""Streaming loader: DataLoader workers decode JPEGs per batch, for sets that do not fit on the device.

ImageNet-LT at 224 px is 23 GiB of uint8 per device and iNaturalist 2018 65 GiB, so at that scale
images stay files. Per step:

1. the main process draws the global batch's indices with the same :class:`IndexSampler` the
   device path uses (random, class-balanced, square-root, progressive; the DRS switch), and the
   RandomResizedCrop and flip uniforms of every image of the global batch from a generator seeded
   by (seed, view, epoch, batch) alone -- so what an image gets does not depend on worker count,
   prefetching, the rank, or a resume;
2. this rank keeps its rows (:class:`~longtail.launch.Shard`): W ranks together decode each image
   of the global batch exactly once;
3. workers decode and crop (:mod:`longtail.data.stream_transforms`, Pillow with JPEG draft mode);
   uint8 ``[B, V, S, S, C]`` batches go to the device (pinned, non-blocking on CUDA);
4. on the device: colour jitter / grayscale drawn for the global batch and sliced (as the device
   path does), then normalisation.

The loader's state between batches is the sampler's state at the epoch's start plus the number
of batches consumed, so a mid-epoch checkpoint resumes exactly at the next batch although the
workers had read ahead. A corrupt or missing file stops the run with one line naming it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from longtail.data.augment import RESIZED_CROP_TRIES, AugmentParams, BatchAugment
from longtail.data.loader import load_loader_state
from longtail.data.samplers import IndexSampler
from longtail.data.seeds import derive
from longtail.data.stream_transforms import eval_crop, train_crop
from longtail.errors import LongtailError
from longtail.launch import Shard

ViewParams = tuple[np.ndarray, np.ndarray, bool]  # u [10, 2], pos [2], flip
Key = tuple[int, list[ViewParams]]


@dataclass(frozen=True)
class CropSpec:
    """The per-image part of a training view: RandomResizedCrop to ``size`` and the flip coin."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)  # torchvision's default (the ImageNet recipes')
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    draft: bool = True


@dataclass
class _Failure:
    """A batch a worker could not decode: the first file's one-line error."""

    message: str


def path_array(paths: Sequence[str | Path]) -> np.ndarray:
    """File names as one fixed-width bytes array: forked workers share its pages, where a list
    of str objects is copied page by page as their reference counts change (measured: ~1.5 KB a
    file a process)."""
    return np.array([str(p).encode() for p in paths], dtype=np.bytes_)


class _CropSet(Dataset[tuple[int, np.ndarray | str]]):
    """Key (index, one ViewParams per view) -> (index, uint8 [V, S, S, C]) or (index, error)."""

    def __init__(self, paths: Sequence[str | Path], crop: CropSpec, channels: int) -> None:
        self.paths, self.crop, self.channels = path_array(paths), crop, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Key) -> tuple[int, np.ndarray | str]:  # type: ignore[override]
        index, views = key
        c = self.crop
        try:
            crops = [
                train_crop(Path(self.paths[index].decode()), torch.from_numpy(u), torch.from_numpy(pos),
                           flip, c.size, c.scale, c.ratio, self.channels, c.draft)
                for u, pos, flip in views
            ]  # fmt: skip
        except LongtailError as err:  # a one-line message, not a worker's traceback
            return index, str(err)
        return index, np.stack(crops)


def _collate(items: list[tuple[int, Any]]) -> tuple[torch.Tensor, torch.Tensor] | _Failure:
    for _, pixels in items:
        if isinstance(pixels, str):
            return _Failure(pixels)
    indices = torch.tensor([i for i, _ in items], dtype=torch.int64)
    return torch.from_numpy(np.stack([p for _, p in items])), indices


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is per-process work; intra-op threads would oversubscribe


def crop_generator(seed: int, view: int, epoch: int, batch: int) -> torch.Generator:
    """A CPU generator that depends on (seed, view, epoch, batch) alone."""
    return torch.Generator().manual_seed(derive(seed, view, epoch, batch))


def _checked(loader: DataLoader[Any]) -> Iterator[Any]:
    """The loader's batches; a worker's decoding failure, or its death, as one line; the workers
    stopped as soon as the consumer stops (a caller that breaks out leaves none behind)."""
    iterator = iter(loader)
    try:
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as err:  # a killed worker, exhausted shared memory
                raise _loader_error(err) from None
            if isinstance(item, _Failure):
                raise LongtailError(item.message)
            yield item
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)  # what its __del__ calls
        if shutdown is not None:
            shutdown()


def _loader_error(err: RuntimeError) -> LongtailError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return LongtailError(
        f"a data loader worker failed ({first[:160]}): lower data.workers, or check the host's"
        " memory and shared memory (/dev/shm)"
    )


class StreamLoader:
    """Batches of augmented views decoded from image files; the interface of ``DeviceLoader``.

    Yields ``(x, y)`` with x float [B, C, S, S] on ``device`` for one view, ``([x_1..x_V], y)`` for
    V views, plus the int64 [B] dataset indices with ``with_indices``. ``labels`` and the
    ``sampler`` stay on the CPU (the sampler's generator is a CPU one).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: torch.Tensor,
        sampler: IndexSampler,
        augments: Sequence[BatchAugment],
        crop: CropSpec,
        *,
        device: torch.device,
        seed: int,
        channels: int = 3,
        workers: int = 0,
        with_indices: bool = False,
        shard: Shard | None = None,
    ) -> None:
        if len(paths) != len(labels):
            raise LongtailError(
                f"stream loader got {len(paths)} files and {len(labels)} labels: one label a file"
            )
        if len(augments) == 0:
            raise LongtailError("loader got no augments: pass one BatchAugment per view")
        if sampler.device.type != "cpu":
            raise LongtailError("the streaming loader's sampler must draw on the CPU")
        for augment in augments:
            if augment.spec.crop != "none" or augment.spec.flip:
                raise LongtailError(
                    "the streaming loader crops and flips in its workers: give device augments"
                    " with crop='none' and flip=False (colour jitter and grayscale only)"
                )
        self.dataset = _CropSet(paths, crop, channels)
        self.labels = labels.long().cpu()
        self.sampler, self.augments, self.crop = sampler, list(augments), crop
        self.device, self.seed, self.channels, self.workers = device, seed, channels, workers
        self.with_indices = with_indices
        self.shard = shard if shard is not None else Shard()
        self._start: dict[str, Any] | None = None  # the sampler's state when this epoch began
        self._consumed = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def _keys(self, epoch: int, batch: int, indices: torch.Tensor) -> list[Key]:
        """This rank's rows of a global batch, each with its views' crop uniforms."""
        n = len(indices)
        params = []
        for v in range(len(self.augments)):
            g = crop_generator(self.seed, v, epoch, batch)
            u = torch.rand(n, RESIZED_CROP_TRIES, 2, generator=g, dtype=torch.float32)
            pos = torch.rand(n, 2, generator=g, dtype=torch.float32)
            flip = (
                torch.rand(n, generator=g) < 0.5
                if self.crop.flip
                else torch.zeros(n, dtype=torch.bool)
            )
            params.append((u.numpy(), pos.numpy(), flip.numpy()))
        rows = range(n)[self.shard.rows(n)]
        return [
            (int(indices[r]), [(u[r], pos[r], bool(flip[r])) for u, pos, flip in params])
            for r in rows
        ]

    def __iter__(self) -> Iterator[Any]:
        start = self.sampler.state_dict()  # before this epoch's draw (or its resumed position)
        epoch, first = int(start["epoch"]), int(start["position"])
        batches = list(self.sampler)  # the epoch's global batches from ``first`` on (indices only)
        self._start, self._consumed = start, first
        # each batch's keys made as the workers ask for them: memory flat in N
        keys = (self._keys(epoch, first + b, idx) for b, idx in enumerate(batches))
        loader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_sampler=keys,  # type: ignore[arg-type]
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if self.workers else None,
            prefetch_factor=4 if self.workers else None,
        )
        for b, (global_indices, (pixels, indices)) in enumerate(
            zip(batches, _checked(loader), strict=True)
        ):
            batch = self._on_device(pixels, indices, len(global_indices))
            self._consumed = first + b + 1  # before the yield: a caller may stop and save here
            yield batch
        self._start = None

    def _on_device(self, pixels: torch.Tensor, indices: torch.Tensor, global_batch: int) -> Any:
        """uint8 [B, V, S, S, C] -> the views, jittered (global draw, own rows) and normalised."""
        x = pixels.to(self.device, non_blocking=True).permute(1, 0, 4, 2, 3)  # [V, B, C, S, S]
        rows = self.shard.rows(global_batch)
        size = self.crop.size
        views = []
        for v, augment in enumerate(self.augments):
            params: AugmentParams = augment.sample_params(global_batch, self.channels, size, size)
            views.append(augment.apply(x[v].contiguous(), params.select(rows)))
        y = self.labels[indices].to(self.device, non_blocking=True)
        out = views[0] if len(views) == 1 else views
        return (out, y, indices.to(self.device)) if self.with_indices else (out, y)

    def state_dict(self) -> dict[str, Any]:
        """Where the next batch starts: the epoch's sampler state and the batches consumed."""
        if self._start is None:  # at an epoch boundary
            sampler = self.sampler.state_dict()
        else:
            at_boundary = self._start["position"] == 0
            sampler = {
                **self._start,
                "epoch_mode": self._start["mode"] if at_boundary else self._start["epoch_mode"],
                "epoch_progress": (
                    self._start["progress"] if at_boundary else self._start["epoch_progress"]
                ),
                "position": self._consumed,
            }
        return {"sampler": sampler, "augments": [a.state_dict() for a in self.augments]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_loader_state(self.sampler, self.augments, state)


class _EvalSet(Dataset[tuple[int, np.ndarray | str]]):
    def __init__(self, paths: Sequence[str | Path], resize: int, crop: int, channels: int) -> None:
        self.paths, self.resize, self.crop, self.channels = (
            path_array(paths),
            resize,
            crop,
            channels,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | str]:
        try:
            pixels = eval_crop(
                Path(self.paths[index].decode()), self.resize, self.crop, self.channels
            )
        except LongtailError as err:
            return index, str(err)
        return index, pixels[None]


class FileImages:
    """Image files standing in for a uint8 ``[N, C, crop, crop]`` device tensor in evaluation:
    each file resized (shorter side ``resize``) and centre-cropped to ``crop``, decoded by
    ``workers`` DataLoader workers batch by batch, in order (:func:`image_batches`)."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        device: torch.device,
        *,
        resize: int = 256,
        crop: int = 224,
        channels: int = 3,
        workers: int = 0,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.device, self.resize, self.crop = device, resize, crop
        self.channels, self.workers = channels, workers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), self.channels, self.crop, self.crop)

    def __len__(self) -> int:
        return len(self.paths)

    def with_paths(self, paths: Sequence[str | Path]) -> FileImages:
        """Other files, decoded the same way (resize, crop, channels, workers, device)."""
        return FileImages(paths, self.device, resize=self.resize, crop=self.crop,
                          channels=self.channels, workers=self.workers)  # fmt: skip

    def subset(self, indices: Sequence[int]) -> FileImages:
        return self.with_paths([self.paths[i] for i in indices])

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 ``[B, C, crop, crop]`` batches on the device, every file once, in order."""
        loader = DataLoader(
            _EvalSet(self.paths, self.resize, self.crop, self.channels),
            batch_size=batch_size,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_worker_init if self.workers else None,
        )
        for pixels, _ in _checked(loader):
            yield pixels[:, 0].to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()


def image_batches(images: torch.Tensor | FileImages, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive uint8 ``[B, C, H, W]`` batches of a device tensor or of files (the last one
    possibly short)."""
    if batch_size < 1:
        raise LongtailError(f"batch_size is {batch_size}: set the evaluation batch size to >= 1")
    if isinstance(images, FileImages):
        yield from images.batches(batch_size)
        return
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]

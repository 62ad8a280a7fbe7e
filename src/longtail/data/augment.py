"""Batched on-device augmentation with per-sample random parameters (airbench style).

Every image in a batch gets its own crop box, flip, jitter factors and grayscale coin, drawn from a
seeded ``torch.Generator`` on the images' device, so a run is reproducible and exactly resumable
through ``state_dict``. The chain is: uint8 -> float [0, 1], crop, flip, colour jitter, grayscale,
normalise. Semantics follow torchvision's RandomCrop(padding), RandomResizedCrop,
RandomHorizontalFlip, RandomApply(ColorJitter, p) and RandomGrayscale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kornia.enhance as ke
import torch
import torch.nn.functional as F

from longtail.data.augment_spec import AugmentSpec
from longtail.data.randaugment import (
    RandAugmentParams,
    RandAugmentSpec,
    apply_randaugment,
    sample_randaugment,
)
from longtail.data.seeds import derive
from longtail.errors import LongtailError

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601
RESIZED_CROP_TRIES = 10


@dataclass
class AugmentParams:
    """Per-sample parameters of one call; ``None`` where the op is off. B = batch size.

    top, left: [B] int64 crop corner in padded coordinates (crop="pad").
    box: [B, 4] int64 (i, j, h, w) crop box as torchvision's RandomResizedCrop (crop="resized").
    flip: [B] bool horizontal flip.
    jitter: [B, 4] float factors (brightness, contrast, saturation, hue in turns), identity where
        ``jitter_apply`` is False; jitter_order lists the op numbers in the order applied.
    gray: [B] bool grayscale coin.
    rand: RandAugment's per-sample draws (``augment.randaugment_ops`` > 0).
    """

    top: torch.Tensor | None = None
    left: torch.Tensor | None = None
    box: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    jitter: torch.Tensor | None = None
    jitter_apply: torch.Tensor | None = None
    jitter_order: tuple[int, ...] = ()
    gray: torch.Tensor | None = None
    rand: RandAugmentParams | None = None

    def select(self, rows: slice) -> AugmentParams:
        """The parameters of ``rows`` of the batch (a rank's share of a global batch's draw)."""

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[rows]

        return AugmentParams(
            top=cut(self.top), left=cut(self.left), box=cut(self.box), flip=cut(self.flip),
            jitter=cut(self.jitter), jitter_apply=cut(self.jitter_apply),
            jitter_order=self.jitter_order, gray=cut(self.gray),
            rand=None if self.rand is None else self.rand.select(rows),
        )  # fmt: skip


def _channel_tensor(values: Sequence[float], channels: int, name: str, device: Any) -> torch.Tensor:
    if len(values) != channels:
        raise LongtailError(
            f"normalisation {name} {tuple(values)} has {len(values)} values for {channels}-channel "
            f"images: give one {name} per channel"
        )
    if name == "std" and min(values) <= 0:
        raise LongtailError(f"normalisation std {tuple(values)} must be positive: fix data.std")
    return torch.tensor(values, dtype=torch.float32, device=device).view(1, channels, 1, 1)


def normalize(
    x_uint8: torch.Tensor,
    mean: Sequence[float] | torch.Tensor,
    std: Sequence[float] | torch.Tensor,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [B, C, H, W] in 0..255 -> ((x / 255) - mean) / std in ``dtype``, per channel.

    ``mean``/``std`` may also be [1, C, 1, 1] device tensors (as :func:`channel_stats` builds),
    which avoids a host-to-device copy per call in a loop.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.ndim != 4:
        raise LongtailError(
            f"normalize input {tuple(x_uint8.shape)} {x_uint8.dtype} is invalid: "
            "pass uint8 [B, C, H, W]"
        )
    c = x_uint8.shape[1]
    m = mean if isinstance(mean, torch.Tensor) else _channel_tensor(mean, c, "mean", x_uint8.device)
    s = std if isinstance(std, torch.Tensor) else _channel_tensor(std, c, "std", x_uint8.device)
    # In place on the fresh float copy: fewer image-sized temporaries to allocate and fault in.
    return x_uint8.to(dtype).div_(255).sub_(m.to(dtype)).div_(s.to(dtype))


def channel_stats(
    mean: Sequence[float], std: Sequence[float], channels: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated [1, C, 1, 1] float32 mean and std tensors on ``device``."""
    return (
        _channel_tensor(mean, channels, "mean", device),
        _channel_tensor(std, channels, "std", device),
    )


def pad_crop_flip(
    x: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flip: torch.Tensor | None,
    padding: int,
    pad_mode: str = "zeros",
) -> torch.Tensor:
    """Crop [B, C, H, W] out of each image padded by ``padding``, then mirror where ``flip``.

    Output pixel (y, x) of image b is padded[b, :, top[b] + y, left[b] + x'] with x' = W-1-x when
    flipped. One gather over flat pixel indices does every crop and flip of the batch at once;
    reflect padding is an index remap, so no reflect-pad kernel is needed for uint8.
    """
    b, c, h, w = x.shape
    rows = top[:, None] + torch.arange(h, device=x.device)  # [B, H] padded coordinates
    ar_w = torch.arange(w, device=x.device)
    cols_local = ar_w if flip is None else torch.where(flip[:, None], w - 1 - ar_w, ar_w)
    cols = left[:, None] + cols_local  # [B, W]
    if pad_mode == "zeros":
        src = x.new_zeros(b, c, h + 2 * padding, w + 2 * padding)
        src[:, :, padding : padding + h, padding : padding + w] = x
        width = w + 2 * padding
    else:
        src, width = x, w
        rows, cols = _reflect(rows - padding, h), _reflect(cols - padding, w)
    flat = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return src.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect indices into [0, n) without repeating the edge (torch 'reflect' padding)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def sample_resized_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """[B, 4] int64 (i, j, h, w) boxes drawn as torchvision's RandomResizedCrop.get_params.

    Area fraction ~ U(scale), log aspect ~ U(log ratio); the first of 10 candidates that fits is
    kept (vectorised: all 10 drawn at once), else the central crop with the aspect clamped to ratio.
    """
    dev = generator.device
    u = torch.rand(batch, RESIZED_CROP_TRIES, 2, generator=generator, device=dev)
    pos = torch.rand(batch, 2, generator=generator, device=dev)
    return resized_boxes(u, pos, height, width, scale, ratio)


def resized_boxes(
    u: torch.Tensor,
    pos: torch.Tensor,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> torch.Tensor:
    """[B, 4] int64 (i, j, h, w) RandomResizedCrop boxes of an ``height x width`` image from drawn
    uniforms: ``u`` [B, 10, 2] (area fraction, log aspect of each candidate), ``pos`` [B, 2] (the
    box's top and left). A pure function of its inputs, so the streaming path can draw the uniforms
    for a global batch in one place and place the boxes where each image's size is known."""
    area = float(height * width)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    ws = torch.round(torch.sqrt(target * aspect)).long()
    hs = torch.round(torch.sqrt(target / aspect)).long()
    valid = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    found = valid.any(dim=1)
    fw, fh = _fallback_size(height, width, ratio)
    w = torch.where(found, ws.gather(1, first).squeeze(1), fw)
    h = torch.where(found, hs.gather(1, first).squeeze(1), fh)
    i = torch.minimum((pos[:, 0] * (height - h + 1)).long(), height - h)
    j = torch.minimum((pos[:, 1] * (width - w + 1)).long(), width - w)
    i = torch.where(found, i, (height - h) // 2)
    j = torch.where(found, j, (width - w) // 2)
    return torch.stack([i, j, h, w], dim=1)


def _fallback_size(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return width, int(round(width / ratio[0]))
    if in_ratio > ratio[1]:
        return int(round(height * ratio[1])), height
    return width, height


def resized_crop_flip(
    x: torch.Tensor, box: torch.Tensor, flip: torch.Tensor | None
) -> torch.Tensor:
    """Bilinear resize of each crop box back to H x W, mirrored where ``flip``: [B,C,H,W] float.

    Equals torch's interpolate(crop, (H, W), bilinear, align_corners=False) per image: one batched
    affine_grid maps output pixels onto the box, and clamping the grid to the box's outer pixel
    centres reproduces interpolate's edge clamping (no bleeding of pixels outside the crop).
    """
    b, _, h, w = x.shape
    box_f = box.to(x.dtype)
    i, j, bh, bw = box_f.unbind(1)
    sx = bw / w if flip is None else torch.where(flip, -bw / w, bw / w)
    zero = torch.zeros_like(sx)
    theta = torch.stack(
        [
            torch.stack([sx, zero, (2 * j + bw) / w - 1], dim=1),
            torch.stack([zero, bh / h, (2 * i + bh) / h - 1], dim=1),
        ],
        dim=1,
    )  # [B, 2, 3]
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    lo = torch.stack([(2 * j + 1) / w - 1, (2 * i + 1) / h - 1], dim=1).view(b, 1, 1, 2)
    hi = torch.stack([(2 * (j + bw) - 1) / w - 1, (2 * (i + bh) - 1) / h - 1], dim=1).view(
        b, 1, 1, 2
    )
    grid = torch.minimum(torch.maximum(grid, lo), hi)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def adjust_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of float RGB [B, 3, H, W] in [0, 1] by ``turns`` [B] (torchvision units).

    torchvision's adjust_hue: h' = (h + turns) mod 1 with S and V kept. Keeping V = max and
    S * V = max - min, the inverse is the closed form c = V - S V clamp(min(k, 4 - k), 0, 1) with
    k = (n_c + 6 h') mod 6, n = (5, 3, 1) for (R, G, B). About 4x faster on CPU than
    kornia.enhance.adjust_hue (radians, full HSV round trip), and equal to it within 2e-6.
    """
    maxc = x.amax(1, keepdim=True)
    delta = maxc - x.amin(1, keepdim=True)
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # Hue in sextants (units of 60 degrees), from the first maximal channel as colorsys does.
    h6 = torch.where(
        maxc == r, (g - b) / safe, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h6 = h6 + 6 * turns.view(-1, 1, 1, 1)
    # (5, 3, 1) built on the device: a host tensor copied per call would synchronise a GPU stream.
    offsets = (5 - 2 * torch.arange(3, device=x.device, dtype=x.dtype)).view(1, 3, 1, 1)
    k = torch.remainder(h6 + offsets, 6)
    return maxc - delta * torch.minimum(k, 4 - k).clamp_(0, 1)


def color_jitter(
    x: torch.Tensor, factors: torch.Tensor, order: Sequence[int], ops: Sequence[bool]
) -> torch.Tensor:
    """torchvision ColorJitter with per-sample factors [B, 4] on float [B, C, H, W] in [0, 1].

    Brightness multiplies (kornia's adjust_brightness would add); contrast blends with the image's
    mean luma; saturation blends with the luma image (kornia's adjust_saturation would scale HSV
    saturation instead); hue rotates HSV hue by factor turns (:func:`adjust_hue`).
    Only ops with ``ops[k]`` True run, in ``order``.
    """
    for k in order:
        if not ops[k]:
            continue
        f = factors[:, k]
        if k == 0:
            x = ke.adjust_brightness_accumulative(x, f)
        elif k == 1:
            x = ke.adjust_contrast_with_mean_subtraction(x, f)
        elif k == 2:
            x = ke.adjust_saturation_with_gray_subtraction(x, f)
        else:
            x = adjust_hue(x, f)
    return x


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of float [B, 3, H, W], replicated to 3 channels."""
    r, g, b = x.unbind(1)
    luma = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b
    return luma.unsqueeze(1).expand_as(x)


class BatchAugment:
    """uint8 [B, C, H, W] -> augmented, normalised float32 [B, C, H, W], on the generator's device.

    Calling it twice gives two independent views (SimCLR-style). Saturation, hue and grayscale need
    colour and are skipped for C = 1; brightness and contrast still apply.
    """

    def __init__(
        self,
        spec: AugmentSpec,
        mean: Sequence[float],
        std: Sequence[float],
        generator: torch.Generator,
    ) -> None:
        self.spec = spec
        self.generator = generator
        self.device = generator.device
        self.mean, self.std = channel_stats(mean, std, len(mean), self.device)
        self.rand_spec = RandAugmentSpec(
            num_ops=spec.randaugment_ops, magnitude=spec.randaugment_magnitude,
            magnitude_std=spec.randaugment_std, prob=spec.randaugment_p,
            fill=tuple(min(1.0, max(0.0, float(v))) for v in mean),  # timm's img_mean
        )  # fmt: skip
        # Built once: a host-to-device copy per batch would synchronise the stream.
        j = spec.jitter
        self._jitter_range = (
            torch.tensor([max(0.0, 1 - v) for v in j[:3]] + [-j[3]], device=self.device),
            torch.tensor([1 + v for v in j[:3]] + [j[3]], device=self.device),
            torch.tensor([1.0, 1.0, 1.0, 0.0], device=self.device),
        )
        # The op order is host-side control flow: drawing it from a CPU generator avoids a sync.
        self.order_generator = torch.Generator().manual_seed(
            derive(generator.initial_seed(), "order")
        )

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def sample_params(self, batch: int, channels: int, height: int, width: int) -> AugmentParams:
        """Draw one call's per-sample parameters (consumes both generators)."""
        s, p = self.spec, AugmentParams()
        if s.crop == "pad":
            offsets = (self._rand(batch, 2) * (2 * s.padding + 1)).long().clamp_(max=2 * s.padding)
            p.top, p.left = offsets[:, 0], offsets[:, 1]
        elif s.crop == "resized":
            p.box = sample_resized_boxes(
                batch,
                height,
                width,
                (s.resized_scale[0], s.resized_scale[1]),
                (s.resized_ratio[0], s.resized_ratio[1]),
                self.generator,
            )
        if s.flip:
            p.flip = self._rand(batch) < 0.5
        ops = self._jitter_ops(channels)
        if any(ops) and s.jitter_p > 0:
            lo, hi, identity = self._jitter_range
            factors = lo + (hi - lo) * self._rand(batch, 4)
            p.jitter_apply = self._rand(batch) < s.jitter_p
            p.jitter = torch.where(p.jitter_apply[:, None], factors, identity)
            p.jitter_order = tuple(torch.randperm(4, generator=self.order_generator).tolist())
        if channels == 3 and s.grayscale_p > 0:
            p.gray = self._rand(batch) < s.grayscale_p
        if s.randaugment_ops > 0:
            p.rand = sample_randaugment(batch, self.generator, self.rand_spec)
        return p

    def _jitter_ops(self, channels: int) -> tuple[bool, ...]:
        colour = channels == 3
        return tuple(v > 0 and (k < 2 or colour) for k, v in enumerate(self.spec.jitter))

    def apply(self, x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
        """Apply drawn parameters to uint8 [B, C, H, W]; returns normalised [B, C, H, W] in the
        default dtype (float32; float64 where a numeric check sets it)."""
        if p.top is not None and p.left is not None:
            x = pad_crop_flip(x, p.top, p.left, p.flip, self.spec.padding, self.spec.pad_mode)
        out = x.to(torch.get_default_dtype()).div_(255)
        if p.box is not None:
            out = resized_crop_flip(out, p.box, p.flip)
        elif p.flip is not None and self.spec.crop == "none":
            out = torch.where(p.flip[:, None, None, None], out.flip(-1), out)
        if p.jitter is not None and p.jitter_apply is not None:
            jittered = color_jitter(out, p.jitter, p.jitter_order, self._jitter_ops(x.shape[1]))
            # Identity factors are exact for brightness/contrast/saturation, but a zero hue shift
            # is only float-accurate, so unselected images are restored explicitly.
            out = torch.where(p.jitter_apply[:, None, None, None], jittered, out)
        if p.gray is not None:
            out = torch.where(p.gray[:, None, None, None], to_grayscale(out), out)
        if p.rand is not None:
            out = apply_randaugment(out, p.rand, self.rand_spec)
        return out.sub_(self.mean).div_(self.std)  # out is always a fresh tensor here

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise LongtailError(
                f"augment input {tuple(x.shape)} {x.dtype} is invalid: pass uint8 [B, C, H, W] "
                f"with C = {self.mean.shape[1]} (the length of mean/std)"
            )
        if x.device.type != self.device.type:
            raise LongtailError(
                f"augment input is on {x.device} but its generator on {self.device}: create the "
                "generator with torch.Generator(device=images.device)"
            )
        b, c, h, w = x.shape
        if (
            self.spec.crop == "pad"
            and self.spec.pad_mode == "reflect"
            and self.spec.padding >= min(h, w)
        ):
            raise LongtailError(
                f"reflect padding {self.spec.padding} needs images larger than it, got {h}x{w}: "
                "lower augment.padding or use pad_mode zeros"
            )
        return self.apply(x, self.sample_params(b, c, h, w))

    def state_dict(self) -> dict[str, Any]:
        """Both generator states: restoring them reproduces every later call exactly."""
        return {
            "generator": self.generator.get_state(),
            "order_generator": self.order_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order_generator.set_state(state["order_generator"])

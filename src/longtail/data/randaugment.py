"""Batched on-device RandAugment (Cubuk et al. 2020) with timm's ``rand-m10-n2-mstd0.5`` semantics.

RandAugment applies N = ``num_ops`` operations to each image, each one chosen uniformly with
replacement from a fixed list, all at one magnitude M on a 0..10 scale. This follows timm's
``rand_augment_transform`` (timm/data/auto_augment.py, default ``_RAND_TRANSFORMS`` list, i.e. no
``inc1`` flag), as BCL and PaCo use it: each chosen op runs with probability ``prob`` (0.5), each
application draws its magnitude m ~ N(M, magnitude_std) clipped to [0, 10] (uniform on [0, M] when
the std is infinite), and the signed ops are negated with probability 1/2. Op (timm name): argument
at magnitude m, with PIL's definition of the op:

    AutoContrast, Equalize, Invert: none (ImageOps)
    Rotate: +-30 m/10 degrees about the image centre
    Posterize: keep int(4 m/10) bits; Solarize: invert levels >= int(256 m/10)
    SolarizeAdd: add int(110 m/10) levels to levels < 128, saturating at 255
    Color, Contrast, Brightness, Sharpness: ImageEnhance factor 0.1 + 1.8 m/10
    ShearX, ShearY: +-0.3 m/10; TranslateXRel, TranslateYRel: +-0.45 m/10 of the width / height

Images are float [B, C, H, W] in [0, 1] and stay float between ops (PIL re-quantises after each op);
ops defined on 8-bit levels (posterize, solarize, solarize-add, equalize) round to the nearest level
first. Geometric ops fill with ``fill`` (timm's ``img_mean``) and resample bilinearly like PIL; timm
picks bilinear or bicubic at random per application (``_RANDOM_INTERPOLATION``, since BCL/PaCo
pass no ``interpolation`` hparam), so the bicubic half of its draws is not reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longtail.errors import LongtailError, require

OPS: tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip
OP_INDEX = {name: k for k, name in enumerate(OPS)}
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")  # the signed ops
LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitudes live on 0..10 and are clipped to it
ROTATE_DEGREES, SHEAR, TRANSLATE_PCT = 30.0, 0.3, 0.45
POSTERIZE_BITS, SOLARIZE_LEVELS, SOLARIZE_ADD_LEVELS, SOLARIZE_ADD_THRESHOLD = 4, 256, 110, 128
ENHANCE_MIN, ENHANCE_SPAN = 0.1, 1.8  # factor range [0.1, 1.9]
# timm's img_mean as BCL/PaCo build it: round(255 * (0.485, 0.456, 0.406)).
TIMM_IMG_MEAN = (124 / 255, 116 / 255, 104 / 255)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's convert("L"), ITU-R BT.601
INTERPOLATIONS = ("bilinear", "nearest")


@dataclass(frozen=True)
class RandAugmentSpec:
    """RandAugment settings; the defaults are timm's ``rand-m10-n2-mstd0.5`` with BCL/PaCo's fill.

    num_ops: ops per image (timm's n); magnitude: M on 0..10 (m); magnitude_std: std of the
    per-application magnitude noise (mstd; inf = uniform on [0, M]); prob: chance each chosen op
    runs (0.5 in timm's rand_augment_ops); fill: colour in [0, 1] per channel for pixels that
    geometric ops bring in from outside; interpolation: "bilinear" (PIL BILINEAR) or "nearest".
    """

    num_ops: int = 2
    magnitude: float = 10.0
    magnitude_std: float = 0.5
    prob: float = 0.5
    fill: tuple[float, ...] = TIMM_IMG_MEAN
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fill", tuple(self.fill))
        n, m, s, p = self.num_ops, self.magnitude, self.magnitude_std, self.prob
        require(
            ("randaugment.num_ops", n, type(n) is int and n >= 0, "an integer >= 0"),
            ("randaugment.magnitude", m, 0 <= m <= LEVEL_DENOM, "in [0, 10] (timm clips to 10)"),
            ("randaugment.magnitude_std", s, s >= 0, "a number >= 0 (inf draws uniform [0, M])"),
            ("randaugment.prob", p, 0 <= p <= 1, "in [0, 1] (the chance each chosen op runs)"),
            (
                "randaugment.fill",
                self.fill,
                len(self.fill) > 0 and all(0 <= v <= 1 for v in self.fill),
                "one value in [0, 1] per channel (e.g. 124/255 for level 124)",
            ),
            (
                "randaugment.interpolation",
                self.interpolation,
                self.interpolation in INTERPOLATIONS,
                f"one of {', '.join(INTERPOLATIONS)}",
            ),
        )


@dataclass
class RandAugmentParams:
    """Per-sample draws of one call. B = batch size, N = num_ops.

    op: [B, N] int64 index into :data:`OPS` (slot j is applied before slot j + 1).
    apply: [B, N] bool, whether the op in that slot runs (probability ``prob``).
    magnitude: [B, N] float32 in [0, 10], the noisy magnitude m of that application.
    negate: [B, N] bool, the sign flip of signed ops (ignored by the others).
    """

    op: torch.Tensor
    apply: torch.Tensor
    magnitude: torch.Tensor
    negate: torch.Tensor

    def select(self, rows: slice | torch.Tensor) -> RandAugmentParams:
        """The parameters of ``rows`` of the batch (a rank's share of a global batch's draw)."""
        return RandAugmentParams(
            self.op[rows], self.apply[rows], self.magnitude[rows], self.negate[rows]
        )


def sample_randaugment(
    batch: int, generator: torch.Generator, spec: RandAugmentSpec | None = None
) -> RandAugmentParams:
    """Draw ``batch`` images' op choices, coins, magnitudes and signs on the generator's device.

    The same draws are consumed whatever ``prob`` is, so the generator's stream does not depend on
    it; the same seed gives the same parameters.
    """
    spec = spec or RandAugmentSpec()
    if batch < 0:
        raise LongtailError(f"randaugment batch size {batch} is negative: pass the image count")
    dev, shape, f32 = generator.device, (batch, spec.num_ops), torch.float32
    op = torch.randint(len(OPS), shape, generator=generator, device=dev)
    apply = torch.rand(shape, generator=generator, device=dev) < spec.prob
    if math.isinf(spec.magnitude_std):
        magnitude = spec.magnitude * torch.rand(shape, generator=generator, device=dev, dtype=f32)
    else:
        noise = torch.randn(shape, generator=generator, device=dev, dtype=f32)
        magnitude = spec.magnitude + spec.magnitude_std * noise
    negate = torch.rand(shape, generator=generator, device=dev) < 0.5
    return RandAugmentParams(op, apply, magnitude.clamp_(0, LEVEL_DENOM), negate)


def apply_randaugment(
    x: torch.Tensor, params: RandAugmentParams, spec: RandAugmentSpec | None = None
) -> torch.Tensor:
    """Apply drawn RandAugment parameters to float [B, C, H, W] in [0, 1]; returns a new tensor.

    Slot by slot, the rows that drew each op are gathered and transformed together; the five
    geometric ops share one affine resampling. Row b's result depends only on row b's parameters.
    One host synchronisation per call (the per-op row counts).
    """
    spec = spec or RandAugmentSpec()
    _check_input(x, params, spec)
    out = x.clone()
    b, n = params.op.shape
    if b == 0 or n == 0:
        return out
    skip = len(OPS)  # the sort key of slots whose coin said "do not apply"
    chosen = torch.where(params.apply, params.op, skip)
    order = chosen.argsort(dim=0, stable=True)  # [B, N]: rows grouped by op, per slot
    counts = F.one_hot(chosen, skip + 1).sum(0).tolist()  # [N][16], the one host sync
    fill = torch.tensor(spec.fill, dtype=x.dtype, device=x.device)
    for s in range(n):
        groups, start = {}, 0
        for k, count in enumerate(counts[s][:skip]):
            if count:
                groups[OPS[k]] = order[start : start + count, s]
            start += count
        geometric = [groups.pop(name) for name in GEOMETRIC if name in groups]
        if geometric:
            rows = torch.cat(geometric)
            mat = _affine_matrices(params.op[rows, s], _signed_level(params, rows, s), *x.shape[2:])
            out[rows] = affine(out[rows], mat, fill, spec.interpolation)
        for name, rows in groups.items():
            out[rows] = _PIXEL_OPS[name](out[rows], params.magnitude[rows, s].to(x.dtype))
    return out


def randaugment(
    x: torch.Tensor, generator: torch.Generator, spec: RandAugmentSpec | None = None
) -> torch.Tensor:
    """Sample and apply in one call: float [B, C, H, W] in [0, 1] -> the same shape."""
    return apply_randaugment(x, sample_randaugment(x.shape[0], generator, spec), spec)


def _check_input(x: torch.Tensor, params: RandAugmentParams, spec: RandAugmentSpec) -> None:
    if not x.is_floating_point() or x.ndim != 4:
        raise LongtailError(
            f"randaugment input {tuple(x.shape)} {x.dtype} is invalid: pass float [B, C, H, W] "
            "in [0, 1] (convert uint8 with x.float() / 255)"
        )
    if len(spec.fill) != x.shape[1]:
        raise LongtailError(
            f"randaugment fill {spec.fill} has {len(spec.fill)} values for {x.shape[1]}-channel "
            "images: give one fill value per channel"
        )
    if params.op.ndim != 2 or params.op.shape[0] != x.shape[0]:
        raise LongtailError(
            f"randaugment params are for {tuple(params.op.shape)} but the batch has {x.shape[0]} "
            "images: sample with the batch size (or .select() this rank's rows)"
        )
    if params.op.device != x.device:
        raise LongtailError(
            f"randaugment images are on {x.device} but their params on {params.op.device}: "
            "sample with torch.Generator(device=images.device)"
        )


def _signed_level(params: RandAugmentParams, rows: torch.Tensor, slot: int) -> torch.Tensor:
    """[R] magnitude / 10 with the drawn sign, float64 (timm's _randomly_negate)."""
    level = params.magnitude[rows, slot].double() / LEVEL_DENOM
    return torch.where(params.negate[rows, slot], -level, level)


def _affine_matrices(op: torch.Tensor, level: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[R, 2, 3] PIL ``Image.transform(AFFINE)`` matrices (output pixel centre -> input point).

    Rotate is PIL's ``rotate(deg)`` (counter-clockwise about (W/2, H/2)); ShearX (1, s, 0, 0, 1, 0);
    ShearY (1, 0, 0, s, 1, 0); TranslateXRel (1, 0, pct W, 0, 1, 0); TranslateYRel likewise in y.
    """
    idx = {name: op == OP_INDEX[name] for name in GEOMETRIC}
    rad = torch.deg2rad(level * ROTATE_DEGREES)
    cos, sin = torch.where(idx["Rotate"], rad.cos(), 1.0), torch.where(idx["Rotate"], rad.sin(), 0)
    cx, cy = w / 2, h / 2
    shear, shift = level * SHEAR, level * TRANSLATE_PCT
    row0 = (
        cos,
        torch.where(idx["ShearX"], shear, -sin),
        torch.where(idx["TranslateXRel"], shift * w, cx - cos * cx + sin * cy),
    )
    row1 = (
        torch.where(idx["ShearY"], shear, sin),
        cos,
        torch.where(idx["TranslateYRel"], shift * h, cy - sin * cx - cos * cy),
    )
    return torch.stack([torch.stack(row0, 1), torch.stack(row1, 1)], 1)


def affine(x: torch.Tensor, mat: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """PIL's affine resampling of float [R, C, H, W] by ``mat`` [R, 2, 3]: same shape back.

    Output pixel (i, j) samples the input at (u, v) = mat @ (j + 0.5, i + 0.5, 1) in pixel units,
    where pixel (i, j) covers [j, j + 1) x [i, i + 1). Points outside the image take ``fill`` [C];
    inside, "nearest" takes pixel (floor v, floor u) and "bilinear" interpolates pixel centres with
    edge clamping, as PIL's NEAREST and BILINEAR filters do.
    """
    r, c, h, w = x.shape
    m = mat.to(torch.float64).view(r, 6, 1, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w) + 0.5
    rows = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1) + 0.5
    u = m[:, 0] * cols + m[:, 1] * rows + m[:, 2]  # [R, H, W]
    v = m[:, 3] * cols + m[:, 4] * rows + m[:, 5]
    inside = ((u >= 0) & (u < w) & (v >= 0) & (v < h)).unsqueeze(1)
    if mode == "nearest":
        iu = u.floor().long().clamp_(0, w - 1)
        iv = v.floor().long().clamp_(0, h - 1)
        flat = (iv * w + iu).view(r, 1, h * w).expand(r, c, h * w)
        val = x.reshape(r, c, h * w).gather(2, flat).view(r, c, h, w)
    else:
        grid = torch.stack((2 * u / w - 1, 2 * v / h - 1), dim=-1).to(x.dtype)
        val = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(inside, val, fill.view(1, c, 1, 1))


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Nearest 8-bit level of float images in [0, 1], as int64."""
    return (x * 255).round_().clamp_(0, 255).long()


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """[R, 1, H, W] luma (PIL convert("L")); the image itself for one channel."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: degenerate + factor (x - degenerate), clipped to [0, 1]."""
    return torch.lerp(degenerate.expand_as(x), x, _per_image(factor)).clamp_(0, 1)


def _enhance_factor(m: torch.Tensor) -> torch.Tensor:
    return ENHANCE_MIN + ENHANCE_SPAN * m / LEVEL_DENOM


def auto_contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast: stretch each channel's [min, max] to [0, 1]; flat channels kept."""
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, 1), x)


def equalize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize per channel on 256 levels: lut[i] = (step // 2 + #{< i}) // step with
    step = (count - count of the top level) // 255; identity when step is 0 or one level only."""
    r, c, h, w = x.shape
    lev = _levels(x).view(r * c, h * w)
    key = lev + 256 * torch.arange(r * c, device=x.device).view(-1, 1)
    hist = torch.bincount(key.view(-1), minlength=r * c * 256).view(r * c, 256)
    top = hist.gather(1, lev.amax(1, keepdim=True))
    step = (h * w - top) // 255
    below = hist.cumsum(1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp_(max=255)
    keep = (step == 0) | ((hist > 0).sum(1, keepdim=True) <= 1)
    lut = torch.where(keep, torch.arange(256, device=x.device), lut)
    return (lut.gather(1, lev).view(r, c, h, w).to(x.dtype)) / 255


def invert(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageOps.invert: 1 - x."""
    return 1 - x


def posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageOps.posterize keeping int(4 m/10) high bits of each level (timm's Posterize)."""
    shift = 8 - (POSTERIZE_BITS * m / LEVEL_DENOM).floor().long()
    shift = _per_image(shift)
    return ((_levels(x) >> shift) << shift).to(x.dtype) / 255


def solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageOps.solarize: invert levels >= int(256 m/10) (m = 10 leaves the image unchanged)."""
    threshold = _per_image((SOLARIZE_LEVELS * m / LEVEL_DENOM).floor())
    return torch.where(_levels(x) >= threshold, 1 - x, x)


def solarize_add(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """timm's solarize_add: levels < 128 get int(110 m/10) levels added, saturating at 255."""
    add = _per_image((SOLARIZE_ADD_LEVELS * m / LEVEL_DENOM).floor()) / 255
    return torch.where(_levels(x) < SOLARIZE_ADD_THRESHOLD, (x + add).clamp_(max=1), x)


def color(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Color: blend with the grayscale image."""
    return _blend(_gray(x), x, _enhance_factor(m))


def contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Contrast: blend with a constant image at the mean of the grayscale image."""
    return _blend(_gray(x).mean((1, 2, 3), keepdim=True), x, _enhance_factor(m))


def brightness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Brightness: blend with black, i.e. scale by the factor."""
    return (x * _per_image(_enhance_factor(m))).clamp_(0, 1)


def sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13),
    which leaves the one-pixel border unfiltered."""
    r, c, h, w = x.shape
    degenerate = x.clone()
    if h >= 3 and w >= 3:
        k = torch.ones(3, 3, dtype=x.dtype, device=x.device)
        k[1, 1] = 5
        smooth = F.conv2d(x.reshape(r * c, 1, h, w), (k / 13).view(1, 1, 3, 3))
        degenerate[:, :, 1:-1, 1:-1] = smooth.view(r, c, h - 2, w - 2)
    return _blend(degenerate, x, _enhance_factor(m))


_PIXEL_OPS = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Posterize": posterize,
    "Solarize": solarize, "SolarizeAdd": solarize_add, "Color": color, "Contrast": contrast,
    "Brightness": brightness, "Sharpness": sharpness,
}  # fmt: skip

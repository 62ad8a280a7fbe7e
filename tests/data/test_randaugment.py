"""Batched RandAugment against PIL, op by op, with timm's level-to-argument rules written out here.

The PIL references follow timm/data/auto_augment.py (``_RAND_TRANSFORMS`` ops and their
``*_level_to_arg`` functions) applied to one uint8 image at a time; ours run on float images.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from longtail.data.randaugment import (
    OP_INDEX,
    OPS,
    RandAugmentParams,
    RandAugmentSpec,
    apply_randaugment,
    randaugment,
    sample_randaugment,
)
from longtail.errors import LongtailError

FILL_LEVELS = (124, 116, 104)  # timm's img_mean as BCL/PaCo pass it
PIXEL_OPS = (
    "AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness",
)  # fmt: skip
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


def images(b: int = 6, c: int = 3, h: int = 16, w: int = 12, seed: int = 0) -> torch.Tensor:
    """uint8 [B, C, H, W] noise, each channel in its own sub-range (so autocontrast and equalize
    have something to do)."""
    gen = torch.Generator().manual_seed(seed)
    lo = torch.randint(0, 100, (b, c, 1, 1), generator=gen)
    span = torch.randint(20, 156, (b, c, 1, 1), generator=gen)
    u = torch.rand(b, c, h, w, generator=gen)
    return (lo + (u * span).round()).to(torch.uint8)


def forced(op: str, m: float, b: int, negate: bool = False) -> RandAugmentParams:
    """Parameters that apply ``op`` at magnitude ``m`` to every row, in one slot."""
    return RandAugmentParams(
        op=torch.full((b, 1), OP_INDEX[op]),
        apply=torch.ones(b, 1, dtype=torch.bool),
        magnitude=torch.full((b, 1), m),
        negate=torch.full((b, 1), negate),
    )


def enhance_factor(m: float) -> float:
    return m / 10 * 1.8 + 0.1  # timm's _enhance_level_to_arg


def pil_op(
    img: Image.Image, op: str, m: float, negate: bool, resample: Image.Resampling
) -> Image.Image:
    """timm's AugmentOp body for one op at a fixed (already noisy and clipped) magnitude."""
    level, sign = m / 10, -1.0 if negate else 1.0
    w, h = img.size
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Posterize":
        return ImageOps.posterize(img, int(level * 4))
    if op == "Solarize":
        return ImageOps.solarize(img, int(level * 256))
    if op == "SolarizeAdd":
        add = int(level * 110)
        return img.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, op)(img).enhance(enhance_factor(m))
    if op == "Rotate":
        return img.rotate(sign * level * 30, resample=resample, fillcolor=FILL_LEVELS)
    matrix = {
        "ShearX": (1, sign * level * 0.3, 0, 0, 1, 0),
        "ShearY": (1, 0, 0, sign * level * 0.3, 1, 0),
        "TranslateXRel": (1, 0, sign * level * 0.45 * w, 0, 1, 0),
        "TranslateYRel": (1, 0, 0, 0, 1, sign * level * 0.45 * h),
    }[op]
    return img.transform(
        img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=FILL_LEVELS
    )


def pil_batch(
    x: torch.Tensor, op: str, m: float, negate: bool, resample: Image.Resampling
) -> torch.Tensor:
    out = []
    for im in x:
        ref = pil_op(Image.fromarray(im.permute(1, 2, 0).numpy()), op, m, negate, resample)
        out.append(torch.from_numpy(np.asarray(ref).copy()).permute(2, 0, 1))
    return torch.stack(out).float()


def ours_levels(x: torch.Tensor, params: RandAugmentParams, **spec: object) -> torch.Tensor:
    out = apply_randaugment(x.float() / 255, params, RandAugmentSpec(**spec))  # type: ignore[arg-type]
    return out * 255


@pytest.mark.parametrize("m", [3.3, 7.1, 10.0])
@pytest.mark.parametrize("op", PIXEL_OPS)
def test_pixel_ops_match_pil(op: str, m: float) -> None:
    x = images()
    d = ours_levels(x, forced(op, m, len(x))) - pil_batch(x, op, m, False, Image.Resampling.NEAREST)
    if op in ("Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd"):
        # Lookup tables on the 8-bit level: exactly PIL's.
        assert d.abs().max() < 1e-3
    elif op in ("AutoContrast", "Brightness"):
        # PIL truncates the stretched / scaled level to uint8, we keep the float: 0 <= d < 1.
        assert d.min() > -1e-3 and d.max() < 1 + 1e-3
    else:
        # PIL also rounds its degenerate image (the L image, its mean, the smoothed image) to a
        # level, an error of <= 1/2 that the blend scales by |1 - factor|; plus the truncation.
        bound = 1 + 0.5 * abs(1 - enhance_factor(m)) + 0.05
        assert d.abs().max() <= bound


@pytest.mark.parametrize("negate", [False, True])
@pytest.mark.parametrize("m", [3.3, 10.0])
@pytest.mark.parametrize("op", GEOMETRIC_OPS)
def test_geometric_ops_match_pil_transform(op: str, m: float, negate: bool) -> None:
    x = images()
    params = forced(op, m, len(x), negate)
    # Points that land exactly on a pixel edge may go either way (PIL accumulates the coordinates
    # step by step), so a few pixels near edges may differ; the rest must agree.
    near = ours_levels(x, params, interpolation="nearest")
    ref = pil_batch(x, op, m, negate, Image.Resampling.NEAREST)
    assert ((near - ref).abs() > 1e-3).any(1).float().mean() <= 0.005
    bil = ours_levels(x, params, interpolation="bilinear")
    d = bil - pil_batch(x, op, m, negate, Image.Resampling.BILINEAR)
    # PIL truncates the interpolated level to uint8: 0 <= d < 1.
    assert ((d < -1e-3) | (d > 1 + 1e-3)).any(1).float().mean() <= 0.005
    filled = (ref == torch.tensor(FILL_LEVELS, dtype=torch.float).view(1, 3, 1, 1)).all(1)
    if m == 10.0:
        assert filled.any()  # the fill colour does appear


def test_magnitude_zero_geometric_ops_are_identity() -> None:
    x = images().float() / 255
    for op in GEOMETRIC_OPS:
        for interpolation in ("nearest", "bilinear"):
            out = apply_randaugment(
                x, forced(op, 0.0, len(x)), RandAugmentSpec(interpolation=interpolation)
            )
            torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


def draw(batch: int = 20000, seed: int = 0, **spec: object) -> RandAugmentParams:
    return sample_randaugment(batch, torch.Generator().manual_seed(seed), RandAugmentSpec(**spec))  # type: ignore[arg-type]


def test_magnitude_noise_is_gaussian_clipped_to_0_10() -> None:
    m = draw(magnitude=5, magnitude_std=0.5).magnitude.double()
    assert abs(m.mean().item() - 5) < 0.01 and abs(m.std().item() - 0.5) < 0.01
    top = draw(magnitude=10, magnitude_std=0.5).magnitude.double()
    assert top.max().item() == 10 and abs((top == 10).double().mean().item() - 0.5) < 0.01
    # E[min(10 + 0.5 Z, 10)] = 10 - 0.5 / sqrt(2 pi)
    assert abs(top.mean().item() - (10 - 0.5 / math.sqrt(2 * math.pi))) < 0.01
    low = draw(magnitude=0.2, magnitude_std=0.5).magnitude.double()
    assert low.min().item() == 0 and abs((low == 0).double().mean().item() - 0.3446) < 0.01
    assert torch.all(draw(magnitude=7, magnitude_std=0).magnitude == 7)
    uniform = draw(magnitude=8, magnitude_std=math.inf).magnitude.double()  # timm's mstd > 100
    assert uniform.min().item() >= 0 and uniform.max().item() <= 8
    assert abs(uniform.mean().item() - 4) < 0.05 and abs(uniform.std().item() - 8 / 12**0.5) < 0.05


def test_op_choice_uniform_with_replacement_and_coins_honoured() -> None:
    p = draw(prob=0.3)
    assert p.op.shape == (20000, 2) and p.op.dtype == torch.int64
    counts = torch.bincount(p.op.flatten(), minlength=len(OPS)).double()
    expected = p.op.numel() / len(OPS)
    assert counts.numel() == len(OPS) and ((counts - expected).abs() < 0.06 * expected).all()
    same = (p.op[:, 0] == p.op[:, 1]).double().mean().item()
    assert abs(same - 1 / len(OPS)) < 0.01  # drawn with replacement
    assert abs(p.apply.double().mean().item() - 0.3) < 0.01
    assert abs(p.negate.double().mean().item() - 0.5) < 0.01
    assert draw(prob=1.0).apply.all() and not draw(prob=0.0).apply.any()


def test_identity_when_prob_zero_or_no_ops() -> None:
    x = images().float() / 255
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(randaugment(x, gen, RandAugmentSpec(prob=0.0)), x)
    out = randaugment(x, gen, RandAugmentSpec(num_ops=0))
    assert torch.equal(out, x) and out is not x


def test_slots_compose_in_order_and_skipped_slots_leave_rows() -> None:
    x = images(b=40, seed=1).float() / 255
    p = draw(batch=40, seed=5, num_ops=3, prob=0.5)
    out = apply_randaugment(x, p)
    step = x
    for s in range(3):
        one = RandAugmentParams(
            p.op[:, s : s + 1],
            p.apply[:, s : s + 1],
            p.magnitude[:, s : s + 1],
            p.negate[:, s : s + 1],
        )
        step = apply_randaugment(step, one)
    torch.testing.assert_close(out, step, atol=1e-6, rtol=0)
    untouched = ~p.apply.any(1)
    assert untouched.any() and torch.equal(out[untouched], x[untouched])


def test_same_seed_same_output_and_select_matches_full_batch() -> None:
    x = images(b=32, seed=2).float() / 255
    spec = RandAugmentSpec(prob=1.0)
    a = randaugment(x, torch.Generator().manual_seed(7), spec)
    b = randaugment(x, torch.Generator().manual_seed(7), spec)
    c = randaugment(x, torch.Generator().manual_seed(8), spec)
    assert torch.equal(a, b) and not torch.equal(a, c)
    p = sample_randaugment(32, torch.Generator().manual_seed(7), spec)
    assert torch.equal(apply_randaugment(x, p, spec), a)
    part = apply_randaugment(x[8:20], p.select(slice(8, 20)), spec)
    torch.testing.assert_close(part, a[8:20], atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept_and_values_stay_in_unit_range(dtype: torch.dtype) -> None:
    x = (images(b=64, h=12, w=12, seed=4).to(dtype) / 255).requires_grad_(False)
    out = randaugment(x, torch.Generator().manual_seed(0), RandAugmentSpec(num_ops=3, prob=1.0))
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)


def test_single_channel_images() -> None:
    x = images(c=1).float() / 255
    spec = RandAugmentSpec(fill=(0.5,), prob=1.0)
    out = randaugment(x, torch.Generator().manual_seed(0), spec)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(apply_randaugment(x, forced("Color", 10.0, len(x)), spec), x)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_ops", -1),
        ("num_ops", 1.5),
        ("magnitude", 11),
        ("magnitude", -0.5),
        ("magnitude_std", -0.1),
        ("magnitude_std", math.nan),
        ("prob", 1.5),
        ("fill", ()),
        ("fill", (124, 116, 104)),
        ("interpolation", "bicubic"),
    ],
)
def test_bad_spec_is_a_one_line_error(field: str, value: object) -> None:
    with pytest.raises(LongtailError, match=f"randaugment.{field}=") as err:
        RandAugmentSpec(**{field: value})  # type: ignore[arg-type]
    assert "\n" not in str(err.value) and "must be" in str(err.value)


def test_bad_inputs_are_one_line_errors() -> None:
    x = images()
    p = forced("Invert", 5.0, len(x))
    with pytest.raises(LongtailError, match="pass float"):
        apply_randaugment(x, p)  # uint8
    with pytest.raises(LongtailError, match="one fill value per channel"):
        apply_randaugment(images(c=1).float() / 255, p)
    with pytest.raises(LongtailError, match="batch has 5 images"):
        apply_randaugment(x[:5].float() / 255, p)
    with pytest.raises(LongtailError, match="negative"):
        sample_randaugment(-1, torch.Generator())

"""Batched augmentation against per-image loop references written from torchvision's definitions."""

from __future__ import annotations

import colorsys
import math

import kornia
import pytest
import torch
import torch.nn.functional as F

from longtail.data.augment import (
    AugmentSpec,
    BatchAugment,
    adjust_hue,
    color_jitter,
    normalize,
    pad_crop_flip,
    resized_crop_flip,
    sample_resized_boxes,
)
from longtail.errors import LongtailError

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
LUMA = (0.299, 0.587, 0.114)


def images(b: int = 16, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=gen)


def augment(spec: AugmentSpec, seed: int = 0, c: int = 3) -> BatchAugment:
    return BatchAugment(spec, MEAN[:c], STD[:c], torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_pad_crop_flip_matches_loop_over_padded_images(pad_mode: str) -> None:
    x, p = images(), 4
    gen = torch.Generator().manual_seed(1)
    top = torch.randint(0, 2 * p + 1, (16,), generator=gen)
    left = torch.randint(0, 2 * p + 1, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    out = pad_crop_flip(x, top, left, flip, p, pad_mode)
    mode = "constant" if pad_mode == "zeros" else "reflect"
    for b in range(16):
        padded = F.pad(x[b : b + 1].float(), (p, p, p, p), mode=mode)[0]
        t, lft = int(top[b]), int(left[b])
        crop = padded[:, t : t + 12, lft : lft + 10]
        expected = crop.flip(-1) if flip[b] else crop
        assert torch.equal(out[b].float(), expected)


def test_pad_crop_chain_is_normalised_crop_and_offsets_cover_range() -> None:
    aug = augment(AugmentSpec(crop="pad", padding=2, flip=True))
    x = images(b=400, h=6, w=6)
    params = aug.sample_params(400, 3, 6, 6)
    assert params.top is not None and params.left is not None and params.flip is not None
    assert set(params.top.tolist()) == set(range(5)) == set(params.left.tolist())
    assert 0.4 < params.flip.double().mean().item() < 0.6
    out = aug.apply(x, params)
    crop = pad_crop_flip(x, params.top, params.left, params.flip, 2)
    torch.testing.assert_close(out, normalize(crop, MEAN, STD))


def test_resized_crop_matches_crop_then_resize_per_image() -> None:
    x = images(b=24, h=16, w=20).float() / 255
    gen = torch.Generator().manual_seed(2)
    boxes = sample_resized_boxes(24, 16, 20, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    flip = torch.rand(24, generator=gen) < 0.5
    out = resized_crop_flip(x, boxes, flip)
    for b in range(24):
        i, j, h, w = boxes[b].tolist()
        ref = F.interpolate(
            x[b : b + 1, :, i : i + h, j : j + w], (16, 20), mode="bilinear", align_corners=False
        )[0]
        torch.testing.assert_close(out[b], ref.flip(-1) if flip[b] else ref, atol=1e-5, rtol=0)


def _torchvision_box(h_img: int, w_img: int, scale, ratio, rng: torch.Generator) -> list[int]:
    """RandomResizedCrop.get_params as documented: 10 tries, then a ratio-clamped centre crop."""
    area = h_img * w_img
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=rng).item())
        log_r = (math.log(ratio[0]), math.log(ratio[1]))
        aspect = math.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(1, generator=rng).item())
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= w_img and 0 < h <= h_img:
            i = int(torch.randint(0, h_img - h + 1, (1,), generator=rng))
            j = int(torch.randint(0, w_img - w + 1, (1,), generator=rng))
            return [i, j, h, w]
    raise AssertionError("the reference is only used where a try succeeds")


def test_resized_box_distribution_matches_torchvision_reference() -> None:
    n, scale, ratio = 6000, (0.2, 1.0), (3 / 4, 4 / 3)
    ours = sample_resized_boxes(n, 32, 32, scale, ratio, torch.Generator().manual_seed(0)).double()
    rng = torch.Generator().manual_seed(1)
    ref = torch.tensor([_torchvision_box(32, 32, scale, ratio, rng) for _ in range(n)]).double()
    for stat in (
        lambda b: b[:, 2] * b[:, 3] / 1024,  # area fraction
        lambda b: torch.log(b[:, 3] / b[:, 2]),  # log aspect w/h
        lambda b: b[:, 0] / (32 - b[:, 2] + 1),  # relative vertical position
    ):
        a, r = stat(ours), stat(ref)
        se = math.sqrt(a.var().item() / n + r.var().item() / n)
        assert abs(a.mean().item() - r.mean().item()) < 4 * se
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()
    frac = ours[:, 2] * ours[:, 3] / 1024
    assert frac.min() > 0.15 and frac.max() <= 1.0


def test_resized_box_falls_back_to_ratio_clamped_centre_crop() -> None:
    # Aspect 3..4 at >= 99% of a square image never fits: torchvision keeps the full width.
    boxes = sample_resized_boxes(5, 30, 30, (0.99, 1.0), (3.0, 4.0), torch.Generator())
    assert boxes.tolist() == [[10, 0, 10, 30]] * 5


def _hue_reference(img: torch.Tensor, turns: float) -> torch.Tensor:
    pixels = img.permute(1, 2, 0).reshape(-1, 3).tolist()
    out = []
    for r, g, b in pixels:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        out.append(colorsys.hsv_to_rgb((h + turns) % 1.0, s, v))
    return torch.tensor(out).reshape(img.shape[1], img.shape[2], 3).permute(2, 0, 1)


def _jitter_reference(img: torch.Tensor, factors: list[float], order: list[int]) -> torch.Tensor:
    """torchvision ColorJitter on one float [3, H, W] image, from its documented definitions."""
    for k in order:
        f = factors[k]
        luma = LUMA[0] * img[0] + LUMA[1] * img[1] + LUMA[2] * img[2]
        if k == 0:
            img = (img * f).clamp(0, 1)
        elif k == 1:
            img = (f * img + (1 - f) * luma.mean()).clamp(0, 1)
        elif k == 2:
            img = (f * img + (1 - f) * luma).clamp(0, 1)
        else:
            img = _hue_reference(img, f)
    return img


@pytest.mark.parametrize("op", [0, 1, 2, 3])
def test_each_jitter_op_matches_reference(op: int) -> None:
    x = images(b=4, h=5, w=6).float() / 255
    values = [
        [0.6, 1.3, 0.0, 1.9],
        [0.5, 1.4, 0.2, 1.0],
        [0.0, 1.7, 0.6, 1.1],
        [-0.5, 0.4, 0.1, 1 / 3],
    ]
    factors = torch.ones(4, 4)
    factors[:, 3] = 0
    factors[:, op] = torch.tensor(values[op])
    ops = [k == op for k in range(4)]
    out = color_jitter(x, factors, [0, 1, 2, 3], ops)
    for b in range(4):
        ref = _jitter_reference(x[b], [float(v) for v in factors[b]], [op])
        torch.testing.assert_close(out[b], ref, atol=2e-5, rtol=0)


def test_hue_turn_convention_on_pure_colours() -> None:
    red = torch.zeros(2, 3, 1, 1)
    red[:, 0] = 1
    out = color_jitter(
        red, torch.tensor([[1, 1, 1, 0.5], [1, 1, 1, 1 / 3]]), [3], [False] * 3 + [True]
    )
    torch.testing.assert_close(
        out[:, :, 0, 0], torch.tensor([[0.0, 1, 1], [0, 1, 0]]), atol=1e-5, rtol=0
    )


def test_hue_matches_kornia_radians_on_many_pixels() -> None:
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    x[:8] = x[:8].round()  # saturated corners and greys, where sextant ties happen
    turns = torch.linspace(-0.5, 0.5, 64)
    expected = kornia.enhance.adjust_hue(x, turns * (2 * math.pi))
    torch.testing.assert_close(adjust_hue(x, turns), expected, atol=1e-5, rtol=0)


def test_full_colour_chain_matches_per_image_reference() -> None:
    spec = AugmentSpec(crop="none", flip=False, jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.3)
    aug = augment(spec, seed=4)
    x = images(b=40, h=4, w=4)
    p = aug.sample_params(40, 3, 4, 4)
    out = aug.apply(x, p)
    assert p.jitter is not None and p.jitter_apply is not None and p.gray is not None
    assert sorted(p.jitter_order) == [0, 1, 2, 3]
    for b in range(40):
        img = x[b].float() / 255
        if p.jitter_apply[b]:
            img = _jitter_reference(img, p.jitter[b].tolist(), list(p.jitter_order))
        if p.gray[b]:
            img = (LUMA[0] * img[0] + LUMA[1] * img[1] + LUMA[2] * img[2]).expand(3, 4, 4)
        ref = (img - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
        torch.testing.assert_close(out[b], ref, atol=1e-4, rtol=0)


def test_jitter_factor_ranges_and_probabilities() -> None:
    spec = AugmentSpec(jitter=(0.4, 1.5, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2)
    p = augment(spec).sample_params(20000, 3, 8, 8)
    assert p.jitter is not None and p.jitter_apply is not None and p.gray is not None
    applied = p.jitter[p.jitter_apply]
    lo, hi = torch.tensor([0.6, 0.0, 0.8, -0.1]), torch.tensor([1.4, 2.5, 1.2, 0.1])
    assert (applied >= lo).all() and (applied <= hi).all()
    torch.testing.assert_close(applied.mean(0), (lo + hi) / 2, atol=0.02, rtol=0)
    for coin, prob in ((p.jitter_apply, 0.8), (p.gray, 0.2)):
        assert abs(coin.double().mean().item() - prob) < 4 * math.sqrt(prob * (1 - prob) / 20000)
    assert (p.jitter[~p.jitter_apply] == torch.tensor([1.0, 1, 1, 0])).all()


def test_single_channel_keeps_brightness_contrast_and_skips_colour() -> None:
    spec = AugmentSpec(crop="none", flip=False, jitter=(0.5, 0.5, 0.5, 0.2), grayscale_p=1.0)
    aug = augment(spec, c=1)
    x = images(b=8, c=1, h=5, w=5)
    p = aug.sample_params(8, 1, 5, 5)
    assert p.gray is None
    out = aug.apply(x, p)
    assert p.jitter is not None and p.jitter_apply is not None
    for b in range(8):
        img = x[b].float() / 255
        for k in p.jitter_order:
            if k < 2 and p.jitter_apply[b]:
                f = float(p.jitter[b, k])
                base = 0.0 if k == 0 else img.mean()
                img = (f * img + (1 - f) * base).clamp(0, 1)
        torch.testing.assert_close(out[b], (img - MEAN[0]) / STD[0], atol=1e-5, rtol=0)


def test_flip_only_and_independent_views() -> None:
    aug = augment(AugmentSpec(crop="none", flip=True))
    x = images(b=64)
    p = aug.sample_params(64, 3, 12, 10)
    out = aug.apply(x, p)
    assert p.flip is not None
    expected = torch.where(p.flip[:, None, None, None], x.flip(-1), x)
    torch.testing.assert_close(out, normalize(expected, MEAN, STD))
    simclr = augment(AugmentSpec(crop="resized", jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2))
    v1, v2 = simclr(x), simclr(x)
    assert v1.shape == x.shape and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2)


def test_constant_images_normalise_exactly() -> None:
    x = torch.full((3, 3, 4, 4), 200, dtype=torch.uint8)
    expected = ((200 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1)
    torch.testing.assert_close(normalize(x, MEAN, STD), expected.expand(3, 3, 4, 4))
    out = augment(AugmentSpec(crop="resized", flip=True))(x)  # geometry cannot change a flat image
    torch.testing.assert_close(out, expected.expand(3, 3, 4, 4))


def test_state_dict_reproduces_next_call() -> None:
    aug = augment(AugmentSpec(crop="resized", jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2))
    x = images(b=8)
    aug(x)
    state = aug.state_dict()
    expected = [aug(x), aug(x)]
    other = augment(AugmentSpec(crop="resized", jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2), 9)
    other.load_state_dict(state)
    assert all(torch.equal(other(x), e) for e in expected)


def test_bad_spec_and_inputs_raise() -> None:
    for bad in (
        {"crop": "random"},
        {"pad_mode": "edge"},
        {"jitter": (0.4, 0.4, 0.4, 0.7)},
        {"grayscale_p": 1.5},
        {"resized_scale": (0.0, 1.0)},
    ):
        with pytest.raises(LongtailError):
            AugmentSpec(**bad)  # type: ignore[arg-type]
    aug = augment(AugmentSpec())
    with pytest.raises(LongtailError, match="uint8"):
        aug(images().float())
    with pytest.raises(LongtailError, match="one std per channel"):
        BatchAugment(AugmentSpec(), MEAN, STD[:2], torch.Generator())
    with pytest.raises(LongtailError, match="reflect padding"):
        augment(AugmentSpec(pad_mode="reflect", padding=4))(images(h=4, w=4))


def test_randaugment_in_the_chain_is_the_op_on_the_cropped_images() -> None:
    """augment.randaugment_ops > 0: after crop and flip, RandAugment with the draws of the same
    generator and the dataset's mean colour as fill; then normalise."""
    from longtail.data.randaugment import RandAugmentSpec, apply_randaugment, sample_randaugment

    spec = AugmentSpec(randaugment_ops=2, randaugment_magnitude=9.0, randaugment_p=0.8)
    x = images(b=24)
    got = augment(spec, seed=3)(x)
    gen = torch.Generator().manual_seed(3)
    offsets = (torch.rand(24, 2, generator=gen) * 9).long().clamp_(max=8)
    flip = torch.rand(24, generator=gen) < 0.5
    cropped = pad_crop_flip(x, offsets[:, 0], offsets[:, 1], flip, 4, "zeros").float() / 255
    rand_spec = RandAugmentSpec(num_ops=2, magnitude=9.0, prob=0.8, fill=MEAN)
    expected = apply_randaugment(cropped, sample_randaugment(24, gen, rand_spec), rand_spec)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(got, (expected - mean) / std)
    plain = augment(AugmentSpec(), seed=3)(x)
    assert not torch.allclose(got, plain)  # the op did something
    # a rank's rows of a global draw are the same rows of the whole batch's result
    aug = augment(spec, seed=5)
    params = aug.sample_params(24, 3, 12, 10)
    whole = aug.apply(x, params)
    torch.testing.assert_close(aug.apply(x[8:16], params.select(slice(8, 16))), whole[8:16])


def test_randaugment_keys_are_checked_in_their_own_words() -> None:
    for bad, words in (
        ({"randaugment_ops": -1}, "augment.randaugment_ops"),
        ({"randaugment_magnitude": 12.0}, "augment.randaugment_magnitude"),
        ({"randaugment_std": -0.5}, "augment.randaugment_std"),
        ({"randaugment_p": 2.0}, "augment.randaugment_p"),
    ):
        with pytest.raises(LongtailError, match=words):
            AugmentSpec(**bad)  # type: ignore[arg-type]

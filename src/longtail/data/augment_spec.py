"""augment.*: a training view's augmentation, as the config section and as what the batched ops
apply (:class:`~longtail.data.augment.BatchAugment`): one class, validated once, when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from longtail.errors import LongtailError


@dataclass
class AugmentSpec:
    """Training-view augmentation, applied on whole batches on the device (per-sample parameters).

    Zero strengths and zero probabilities switch an op off. crop: "pad" (pad by ``padding``,
    random crop back to H x W), "resized" (RandomResizedCrop with ``resized_scale`` /
    ``resized_ratio``, output H x W) or "none". jitter: ColorJitter strengths (brightness,
    contrast, saturation, hue), applied per image with probability ``jitter_p``. randaugment_*:
    RandAugment (:mod:`longtail.data.randaugment`, timm's ``rand-n{ops}-m{magnitude}-mstd{std}``)
    after the other ops, on the crop; off with ``randaugment_ops=0``.
    """

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "crop": ("pad", "resized", "none"),
        "pad_mode": ("zeros", "reflect"),
    }

    crop: str = "pad"  # pad (pad-and-crop) | resized (RandomResizedCrop) | none
    padding: int = 4
    pad_mode: str = "zeros"  # zeros (torchvision RandomCrop(padding=4), LDAM-DRW) | reflect
    # (lists, so that the config names a wrong length in its own words; tuples are taken too)
    resized_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])  # area [low, high]
    resized_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])  # aspect [lo, hi]
    flip: bool = True
    jitter: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # b, c, s, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.0
    # RandAugment after crop, flip, jitter and grayscale (BCL's classification view: 2 ops at 10,
    # timm rand-n2-m10-mstd0.5); 0 ops: off. Fill: the dataset's mean colour (timm's img_mean)
    randaugment_ops: int = 0  # N ops per image, chosen uniformly with replacement
    randaugment_magnitude: float = 10.0  # M on timm's 0..10 scale
    randaugment_std: float = 0.5  # per-application magnitude noise (mstd; .inf: uniform [0, M])
    randaugment_p: float = 0.5  # the chance each chosen op runs (timm's RandAugment ops: 0.5)

    def __post_init__(self) -> None:
        for name in ("resized_scale", "resized_ratio", "jitter"):
            setattr(self, name, [float(v) for v in getattr(self, name)])
        for key, options in self.choices.items():
            if getattr(self, key) not in options:
                raise LongtailError(
                    f"augment.{key}={getattr(self, key)!r} is not one of {', '.join(options)}:"
                    " pick one of them"
                )
        if self.padding < 0:
            raise LongtailError(
                f"augment.padding={self.padding} must be >= 0 (pixels of padding): fix it"
            )
        scale = self.resized_scale
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise LongtailError(
                f"augment.resized_scale must be [low, high] in (0, 1] (got {scale})"
            )
        ratio = self.resized_ratio
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise LongtailError(
                f"augment.resized_ratio must be [low, high] with 0 < low <= high (got {ratio})"
            )
        if len(self.jitter) != 4 or any(v < 0 for v in self.jitter):
            raise LongtailError(
                "augment.jitter takes 4 values >= 0: [brightness, contrast, saturation, hue]"
            )
        if self.jitter[3] > 0.5:
            raise LongtailError(f"augment.jitter hue must be <= 0.5 (got {self.jitter[3]})")
        for name in ("jitter_p", "grayscale_p", "randaugment_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise LongtailError(f"augment.{name} must be a probability in [0, 1] (got {p})")
        n, m, std = self.randaugment_ops, self.randaugment_magnitude, self.randaugment_std
        if type(n) is not int or n < 0:
            raise LongtailError(f"augment.randaugment_ops must be a whole number >= 0 (got {n})")
        if not 0 <= m <= 10:
            raise LongtailError(
                f"augment.randaugment_magnitude must be in [0, 10] (got {m}): timm's scale"
            )
        if not std >= 0:
            raise LongtailError(
                f"augment.randaugment_std must be >= 0 (got {std}); .inf draws uniform on [0, M]"
            )

"""The streaming loader: sharding, exact mid-epoch resume, one-line decoding errors, evaluation.

Tiny PNGs of varied sizes stand in for ImageNet's JPEGs (the crop arithmetic is the same; the
draft decoding of JPEGs is checked in test_stream_transforms.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from data.fixtures import write_split_list
from longtail.data.augment import AugmentSpec, BatchAugment
from longtail.data.readers.split_list import read_split_list
from longtail.data.samplers import IndexSampler
from longtail.data.stream import CropSpec, FileImages, StreamLoader, image_batches
from longtail.data.stream_transforms import eval_crop
from longtail.errors import LongtailError
from longtail.launch import Shard

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet's
CROP = CropSpec(size=16)
JITTER = AugmentSpec(crop="none", flip=False, jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], torch.Tensor]:
    root, listed, _ = write_split_list(tmp_path_factory.mktemp("stream"), [12, 6, 3], 3)
    parsed = read_split_list(listed, root)
    return parsed.paths, torch.as_tensor(parsed.labels)


def _loader(files: tuple[list[Path], torch.Tensor], shard: Shard | None = None, views: int = 2,
            workers: int = 0, mode: str = "class_balanced", batch: int = 6) -> StreamLoader:  # fmt: skip
    paths, labels = files
    sampler = IndexSampler(labels, 3, batch, mode=mode, drop_last=True,  # type: ignore[arg-type]
                           generator=torch.Generator().manual_seed(7))  # fmt: skip
    augments = [
        BatchAugment(JITTER, MEAN, STD, torch.Generator().manual_seed(11 + v)) for v in range(views)
    ]
    return StreamLoader(paths, labels, sampler, augments, CROP, device=torch.device("cpu"),
                        seed=3, workers=workers, with_indices=True, shard=shard)  # fmt: skip


def _epochs(loader: StreamLoader, epochs: int) -> list[Any]:
    return [batch for _ in range(epochs) for batch in loader]


def test_two_ranks_decode_each_image_of_the_global_batch_once(
    files: tuple[list[Path], torch.Tensor],
) -> None:
    one = _epochs(_loader(files), 2)
    ranks = [_epochs(_loader(files, Shard(r, 2)), 2) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == 2 * (21 // 6)
    for whole, *parts in zip(one, *ranks, strict=True):
        (views, y, idx), shares = whole, parts
        assert torch.equal(torch.cat([s[2] for s in shares]), idx)  # the rows, in order, once
        assert torch.equal(torch.cat([s[1] for s in shares]), y)
        for v in range(2):  # the same pixels, jitter included: the draw is the global batch's
            assert torch.equal(torch.cat([s[0][v] for s in shares]), views[v])
    first = one[0][0]
    assert first[0].shape == (6, 3, 16, 16) and not torch.equal(first[0], first[1])


def test_the_labels_are_the_listed_labels(files: tuple[list[Path], torch.Tensor]) -> None:
    for _, y, idx in _loader(files, mode="random", views=1):
        assert torch.equal(y, files[1][idx])


def test_worker_count_does_not_change_a_batch(files: tuple[list[Path], torch.Tensor]) -> None:
    for a, b in zip(_loader(files), _loader(files, workers=2), strict=True):
        assert all(torch.equal(x, z) for x, z in zip(a[0], b[0], strict=True))


def test_a_mid_epoch_state_resumes_at_the_next_batch(
    files: tuple[list[Path], torch.Tensor],
) -> None:
    """The workers read ahead; the state still points at the batch after the last one taken."""
    want = _epochs(_loader(files, workers=2), 2)
    first = _loader(files, workers=2)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 2:
            break
    state = first.state_dict()
    assert state["sampler"]["position"] == 2
    again = _loader(files, workers=2)
    again.load_state_dict(state)
    got += _epochs(again, 2)[: len(want) - 2]
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a[2], b[2]) and all(
            torch.equal(x, z) for x, z in zip(a[0], b[0], strict=True)
        )


def test_a_corrupt_file_is_one_line_naming_it(
    files: tuple[list[Path], torch.Tensor], tmp_path: Path
) -> None:
    paths, labels = files
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    sampler = IndexSampler(labels, 3, 21, mode="random", generator=torch.Generator().manual_seed(0))
    loader = StreamLoader([*paths[:-1], bad], labels, sampler,
                          [BatchAugment(JITTER, MEAN, STD, torch.Generator().manual_seed(1))], CROP,
                          device=torch.device("cpu"), seed=0, workers=2)  # fmt: skip
    with pytest.raises(LongtailError, match=rf"image {bad} is corrupt") as info:
        next(iter(loader))
    assert "\n" not in str(info.value)


def test_device_augments_must_leave_crop_and_flip_to_the_workers(
    files: tuple[list[Path], torch.Tensor],
) -> None:
    paths, labels = files
    sampler = IndexSampler(labels, 3, 4, generator=torch.Generator())
    padded = BatchAugment(AugmentSpec(), MEAN, STD, torch.Generator())
    with pytest.raises(LongtailError, match="crops and flips in its workers"):
        StreamLoader(paths, labels, sampler, [padded], CROP, device=torch.device("cpu"), seed=0)


def test_evaluation_batches_are_each_file_resized_and_centre_cropped_once(
    files: tuple[list[Path], torch.Tensor],
) -> None:
    paths, labels = files
    images = FileImages(paths, torch.device("cpu"), resize=20, crop=16, workers=2)
    assert images.shape == (21, 3, 16, 16)
    batches = list(image_batches(images, 8))
    assert [len(b) for b in batches] == [8, 8, 5]
    x = torch.cat(batches)
    assert x.dtype == torch.uint8
    for k in (0, 9, 20):
        want = torch.from_numpy(np.array(eval_crop(paths[k], 20, 16))).permute(2, 0, 1)
        assert torch.equal(x[k], want)
    assert torch.equal(torch.cat(list(image_batches(images.subset([9, 20]), 8))), x[[9, 20]])


def test_a_model_is_evaluated_on_files_as_on_the_same_pixels_in_memory(
    files: tuple[list[Path], torch.Tensor],
) -> None:
    from longtail.eval.predict import evaluate
    from longtail.models import create_model

    paths, labels = files
    images = FileImages(paths, torch.device("cpu"), resize=20, crop=16)
    model = create_model("resnet20", 3, width=0.25).eval()
    kwargs = {"num_classes": 3, "train_counts": [12, 6, 3], "batch_size": 5,
              "transform": lambda x: x.float() / 255}  # fmt: skip
    tensor = torch.cat(list(image_batches(images, 100)))
    assert evaluate(model, images, labels, **kwargs) == evaluate(model, tensor, labels, **kwargs)

"""DeviceLoader, eval_batches and to_device_tensor: coverage, determinism, exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longtail.data.augment import AugmentSpec, BatchAugment
from longtail.data.loader import DeviceLoader, eval_batches, to_device_tensor
from longtail.data.samplers import IndexSampler
from longtail.errors import LongtailError

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
N = 150
SIMCLR = AugmentSpec(crop="resized", jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2)


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    """Image k is flat with value k in every channel; its label is k % 10."""
    values = torch.arange(N, dtype=torch.uint8).view(N, 1, 1, 1)
    return values.expand(N, 3, 8, 8).contiguous(), torch.arange(N) % 10


def make_loader(
    seed: int = 0, specs: tuple[AugmentSpec, ...] = (SIMCLR,), mode: str = "random"
) -> DeviceLoader:
    images, labels = dataset()
    sampler = IndexSampler(
        labels,
        10,
        32,
        mode,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),  # type: ignore[arg-type]
    )
    augments = [
        BatchAugment(spec, MEAN, STD, torch.Generator().manual_seed(seed * 100 + v))
        for v, spec in enumerate(specs)
    ]
    return DeviceLoader(images, labels, sampler, augments)


def test_single_view_shapes_and_dtypes() -> None:
    loader = make_loader()
    batches = list(loader)
    assert len(batches) == len(loader) == 5
    x, y = batches[0]
    assert isinstance(x, torch.Tensor)
    assert x.shape == (32, 3, 8, 8) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    assert batches[-1][0].shape[0] == N - 4 * 32


def test_two_views_differ_and_share_labels() -> None:
    loader = make_loader(specs=(SIMCLR, SIMCLR))
    images, _ = dataset()
    images[:, 0] = torch.randint(0, 256, (N, 8, 8), dtype=torch.uint8)  # texture for crops to see
    loader.images = images
    views, y = next(iter(loader))
    assert isinstance(views, list) and len(views) == 2
    assert views[0].shape == views[1].shape == (32, 3, 8, 8)
    assert y.shape == (32,)
    assert not torch.allclose(views[0], views[1])


def test_random_epoch_covers_data_and_pixels_match_labels() -> None:
    plain = AugmentSpec(crop="pad", padding=0, flip=True)
    loader = make_loader(specs=(plain,))
    seen = []
    for x, y in loader:
        assert isinstance(x, torch.Tensor)
        # Flat images survive flips: recover k from the first channel and check the label.
        k = torch.round((x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).long()
        assert torch.equal(k % 10, y)
        seen.append(k)
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(N))


def test_same_seed_same_stream() -> None:
    a = [x for x, _ in make_loader(seed=3)]
    b = [x for x, _ in make_loader(seed=3)]
    c = [x for x, _ in make_loader(seed=4)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("mode", ["random", "sqrt"])
def test_resume_mid_stream_matches_uninterrupted_run(mode: str) -> None:
    specs = (SIMCLR, AugmentSpec(crop="pad", jitter=(0.4, 0.4, 0.0, 0.0)))
    reference = make_loader(seed=5, specs=specs, mode=mode)
    ref_stream = list(reference) + list(reference)

    loader = make_loader(seed=5, specs=specs, mode=mode)
    it = iter(loader)
    head = [next(it) for _ in range(3)]
    state = loader.state_dict()

    resumed = make_loader(seed=77, specs=specs, mode=mode)
    resumed.load_state_dict(state)
    stream = head + list(resumed) + list(resumed)
    assert len(stream) == len(ref_stream)
    for (views, y), (ref_views, ref_y) in zip(stream, ref_stream, strict=True):
        assert torch.equal(y, ref_y)
        assert all(torch.equal(v, r) for v, r in zip(views, ref_views, strict=True))


def test_eval_batches_in_order_and_normalised() -> None:
    images, labels = dataset()
    batches = list(eval_batches(images, labels, 64, MEAN, STD))
    assert [x.shape[0] for x, _ in batches] == [64, 64, N - 128]
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(torch.cat([b[1] for b in batches]), labels)
    k = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1) / 255
    expected = (k - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(x, expected.expand(N, 3, 8, 8))


def test_eval_normalisation_standardises_with_data_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=gen)
    scaled = images.double() / 255
    mean = scaled.mean((0, 2, 3)).tolist()
    std = scaled.std((0, 2, 3), correction=0).tolist()
    x = torch.cat([b for b, _ in eval_batches(images, torch.zeros(64), 20, mean, std)])
    torch.testing.assert_close(
        x.double().mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        x.double().std((0, 2, 3), correction=0),
        torch.ones(3, dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


def test_to_device_tensor_layout() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    t = to_device_tensor(arr, "cpu")
    assert t.shape == (5, 3, 6, 7) and t.dtype == torch.uint8 and t.is_contiguous()
    assert np.array_equal(t.numpy(), arr.transpose(0, 3, 1, 2))
    gray = to_device_tensor(arr[..., 0], torch.device("cpu"))
    assert gray.shape == (5, 1, 6, 7) and np.array_equal(gray[:, 0].numpy(), arr[..., 0])
    with pytest.raises(LongtailError, match="uint8"):
        to_device_tensor(arr.astype(np.float32), "cpu")


def test_bad_loader_arguments_raise() -> None:
    images, labels = dataset()
    sampler = IndexSampler(labels, 10, 8)
    with pytest.raises(LongtailError, match="no augments"):
        DeviceLoader(images, labels, sampler, [])
    with pytest.raises(LongtailError, match="uint8"):
        DeviceLoader(images.float(), labels, sampler, [])
    with pytest.raises(LongtailError, match="one label per image"):
        DeviceLoader(images, labels[:-1], sampler, [])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to check host syncs")
def test_no_host_sync_per_batch_on_cuda() -> None:
    device = torch.device("cuda")
    images, labels = dataset()
    images, labels = images.to(device), labels.to(device)
    sampler = IndexSampler(labels, 10, 16, "sqrt", generator=torch.Generator(device).manual_seed(0))
    specs = (SIMCLR, AugmentSpec(crop="pad", jitter=(0.4, 0.4, 0.4, 0.1), grayscale_p=0.2))
    augments = [BatchAugment(s, MEAN, STD, torch.Generator(device).manual_seed(1)) for s in specs]
    it = iter(DeviceLoader(images, labels, sampler, augments))
    next(it)  # the epoch's indices are drawn here, once
    torch.cuda.set_sync_debug_mode("error")
    try:
        for views, y in it:
            assert all(v.device.type == "cuda" for v in views) and y.device.type == "cuda"
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("mode", ["random", "class_balanced"])
def test_shards_of_the_global_batch_are_the_one_process_batch(mode: str) -> None:
    """W = 2 ranks (same seeds) keep halves of the same augmented global batch, in rank order."""
    from longtail.launch import Shard

    def stream(shard: Shard | None) -> list:  # type: ignore[type-arg]
        images, labels = dataset()
        sampler = IndexSampler(labels, 10, 32, mode, drop_last=True,  # type: ignore[arg-type]
                               generator=torch.Generator().manual_seed(4))  # fmt: skip
        augments = [
            BatchAugment(SIMCLR, MEAN, STD, torch.Generator().manual_seed(v)) for v in (1, 2)
        ]
        return list(DeviceLoader(images, labels, sampler, augments, True, shard))

    whole = stream(None)
    halves = [stream(Shard(rank, 2)) for rank in (0, 1)]
    assert len(halves[0]) == len(halves[1]) == len(whole) > 1
    for (views, y, idx), *parts in zip(whole, *halves, strict=True):
        assert all(p[1].shape == (16,) for p in parts)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        assert torch.equal(torch.cat([p[2] for p in parts]), idx)
        for v in range(2):
            assert torch.equal(torch.cat([p[0][v] for p in parts]), views[v])

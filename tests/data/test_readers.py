"""Readers against files written in the real formats, and against the real shared data sets."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.fixtures import (
    idx_bytes,
    write_cifar10_pickles,
    write_cifar100_pickles,
    write_idx,
    write_image_folder,
    write_split_list,
)
from longtail.data.arrays import ImageArrays
from longtail.data.lt_index import long_tail_counts, long_tail_indices
from longtail.data.readers.cifar import read_cifar
from longtail.data.readers.idx import (
    FASHION_MNIST_CLASSES,
    read_idx,
    read_idx_pair,
    read_mnist_like,
)
from longtail.data.readers.imagefolder import read_image_folder
from longtail.data.readers.split_list import decode_file_list, read_split_list
from longtail.data.registry import dataset_stats
from longtail.errors import LongtailError


def assert_same(got: ImageArrays, want: ImageArrays) -> None:
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.classes == want.classes
    assert got.images.flags.c_contiguous and got.labels.dtype == np.int64


# ---------------------------------------------------------------- CIFAR pickles


def test_cifar10_pickles_round_trip_from_folder_or_parent(tmp_path: Path) -> None:
    written = write_cifar10_pickles(tmp_path, n_per_class=7, n_test_per_class=3)
    for root in (tmp_path, written.root):
        for split in ("train", "test"):
            assert_same(read_cifar(root, split), written.splits[split])
    assert read_cifar(tmp_path, "train").class_counts() == [7] * 10


def test_cifar_row_layout_is_planar_rgb(tmp_path: Path) -> None:
    # Checked from the format's definition, independently of the writer's transpose.
    written = write_cifar10_pickles(tmp_path, n_per_class=2, n_test_per_class=1)
    import pickle

    with (written.root / "data_batch_1").open("rb") as f:
        rows = pickle.load(f, encoding="bytes")[b"data"]
    images = read_cifar(tmp_path, "train").images
    rng = np.random.RandomState(0)
    for _ in range(50):
        n, y, x, c = rng.randint(len(rows)), rng.randint(32), rng.randint(32), rng.randint(3)
        assert images[n, y, x, c] == rows[n, c * 1024 + y * 32 + x]


def test_cifar100_pickles_keep_coarse_labels(tmp_path: Path) -> None:
    written = write_cifar100_pickles(tmp_path)
    got = read_cifar(tmp_path, "train")
    assert_same(got, written.splits["train"])
    assert got.num_classes == 100
    assert got.coarse_classes == written.splits["train"].coarse_classes
    np.testing.assert_array_equal(got.coarse_labels, got.labels // 5)


def test_cifar_missing_and_corrupt_files(tmp_path: Path) -> None:
    written = write_cifar10_pickles(tmp_path, n_per_class=1, n_test_per_class=1)
    (written.root / "data_batch_3").unlink()
    with pytest.raises(LongtailError, match=r"data_batch_3 is missing: point data.root"):
        read_cifar(tmp_path, "train")
    read_cifar(tmp_path, "test")  # the test split does not need it
    (written.root / "test_batch").write_bytes(b"\x80\x02}q\x00(X")  # a pickle cut short
    with pytest.raises(LongtailError, match="test_batch is corrupt"):
        read_cifar(tmp_path, "test")
    with pytest.raises(LongtailError, match="split must be 'train' or 'test'"):
        read_cifar(tmp_path, "val")
    with pytest.raises(LongtailError, match="no CIFAR pickles found"):
        read_cifar(tmp_path / "cifar-10-batches-py", "train", num_classes=100)


@pytest.mark.shared_data
def test_real_cifar100(cifar100_root: Path) -> None:
    train = read_cifar(cifar100_root, "train")
    test = read_cifar(cifar100_root.parent, "test", num_classes=100)
    assert train.images.shape == (50_000, 32, 32, 3) and test.images.shape == (10_000, 32, 32, 3)
    assert train.class_counts() == [500] * 100 and test.class_counts() == [100] * 100
    assert train.num_classes == 100 and len(train.coarse_classes or []) == 20
    assert np.bincount(train.coarse_labels).tolist() == [2500] * 20  # type: ignore[arg-type]
    assert train.classes[:3] == ["apple", "aquarium_fish", "baby"]
    assert train.classes[-1] == "worm"
    assert (train.coarse_classes or [])[:2] == ["aquatic_mammals", "fish"]
    # Published CIFAR-100 training statistics (used by most CIFAR-100 training scripts).
    mean, std = dataset_stats(train)
    np.testing.assert_allclose(mean, [0.5071, 0.4865, 0.4409], atol=6e-4)
    np.testing.assert_allclose(std, [0.2673, 0.2564, 0.2762], atol=6e-4)
    indices = long_tail_indices(train.labels, long_tail_counts(500, 100, 100), seed=0)
    assert len(indices) == 10_847


# ---------------------------------------------------------------- ImageFolder


def test_image_folder_png_round_trip_is_exact(tmp_path: Path) -> None:
    written = write_image_folder(
        tmp_path, ["dog", "cat", "emu"], [3, 5, 2], size=12, n_test_per_class=1
    )
    got = read_image_folder(tmp_path, "train")
    assert got.classes == ["cat", "dog", "emu"]  # sorted folder names, whatever the write order
    # The writer labelled dog 0, cat 1: map its arrays into sorted-class order to compare.
    order = [1, 0, 2]
    src = written.splits["train"]
    want_idx = np.concatenate([np.where(src.labels == o)[0] for o in order])
    np.testing.assert_array_equal(got.images, src.images[want_idx])
    assert got.class_counts() == [5, 3, 2]
    assert read_image_folder(tmp_path, "test").class_counts() == [1, 1, 1]
    two_threads = read_image_folder(tmp_path, "train", workers=2)
    np.testing.assert_array_equal(two_threads.images, got.images)


def test_image_folder_jpeg_and_grayscale(tmp_path: Path) -> None:
    written = write_image_folder(tmp_path, ["a", "b"], 4, size=16, ext="jpg")
    got = read_image_folder(tmp_path, "train")
    error = np.abs(got.images.astype(int) - written.splits["train"].images.astype(int)).mean()
    assert error < 12  # lossy, but the same pictures
    gray = read_image_folder(tmp_path, "train", channels=1)
    assert gray.images.shape == (8, 16, 16, 1)
    with Image.open(tmp_path / "train" / "b" / "0002.jpg") as image:
        np.testing.assert_array_equal(gray.images[6, ..., 0], np.asarray(image.convert("L")))


def test_image_folder_file_order_and_ignored_entries(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "only"
    folder.mkdir(parents=True)
    for name, value in (("b.png", 2), ("10.PNG", 1), ("a.jpeg", 3)):
        Image.fromarray(np.full((4, 4, 3), value * 60, np.uint8)).save(
            folder / name, format="PNG" if name.lower().endswith("png") else "JPEG", quality=100
        )
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    got = read_image_folder(tmp_path, "train")
    assert got.classes == ["only"]
    assert got.images[:, 0, 0, 0].tolist() == pytest.approx([60, 180, 120], abs=2)  # 10, a, b


def test_image_folder_errors(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a", "b"], 2, size=8)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(tmp_path / "train" / "b" / "0009.png")
    with pytest.raises(LongtailError, match=r"differ in size: .* is 8x9: .*split_list"):
        read_image_folder(tmp_path, "train")
    (tmp_path / "train" / "b" / "0009.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(LongtailError, match=r"0009.png is corrupt"):
        read_image_folder(tmp_path, "train")
    shutil.rmtree(tmp_path / "train" / "b")
    (tmp_path / "train" / "b").mkdir()
    with pytest.raises(LongtailError, match=r"class folder .*b holds no"):
        read_image_folder(tmp_path, "train")
    with pytest.raises(LongtailError, match=r"split .*val does not exist .*'train'"):
        read_image_folder(tmp_path, "val")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(LongtailError, match="no class sub-folders"):
        read_image_folder(tmp_path / "empty", "train")


@pytest.mark.shared_data
def test_real_cifar10_jpeg(cifar10_jpeg_train: ImageArrays) -> None:
    train = cifar10_jpeg_train
    assert train.images.shape == (50_000, 32, 32, 3)
    assert train.class_counts() == [5000] * 10
    assert train.classes == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    # CIFAR-10's published training mean, up to the JPEG re-encoding.
    mean, _ = dataset_stats(train)
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=5e-3)


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


def test_idx_header_parsed_from_hand_written_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tiny-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12)))
    np.testing.assert_array_equal(read_idx(path, 0x803), np.arange(12).reshape(2, 2, 3))


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    written = write_idx(tmp_path, 6, 2, size=9, gz=gz)
    for split in ("train", "test"):
        got = read_mnist_like(tmp_path, split, dataset="mnist")
        assert_same(got, written.splits[split])
        assert got.images.shape[1:] == (9, 9, 1)
    assert read_mnist_like(tmp_path, "train").classes == FASHION_MNIST_CLASSES


def test_idx_debian_and_torchvision_layouts(tmp_path: Path) -> None:
    deb = write_idx(tmp_path / "deb" / "usr/share/datasets/fashion-mnist", 3, 1)
    assert_same_images = read_mnist_like(tmp_path / "deb", "train")
    np.testing.assert_array_equal(assert_same_images.images, deb.splits["train"].images)
    tv = write_idx(tmp_path / "tv" / "FashionMNIST" / "raw", 2, 1, gz=False)
    np.testing.assert_array_equal(
        read_mnist_like(tmp_path / "tv", "test").labels, tv.splits["test"].labels
    )
    with pytest.raises(LongtailError, match=r"no t10k-images-idx3-ubyte.*longtail.data.fetch"):
        read_mnist_like(tmp_path / "tv" / "FashionMNIST", "test")


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    write_idx(tmp_path, 2, 1, gz=False)
    images, labels = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    with pytest.raises(
        LongtailError, match=r"train-labels-idx1-ubyte has magic 0x00000801, expected 0x00000803"
    ):
        read_idx_pair(labels, images)
    payload = images.read_bytes()
    images.write_bytes(payload[:-5])
    with pytest.raises(
        LongtailError, match=r"train-images-idx3-ubyte holds \d+ data bytes but its header"
    ):
        read_mnist_like(tmp_path, "train")
    images.write_bytes(payload)
    labels.write_bytes(idx_bytes(np.zeros(3, np.uint8), 0x801))
    with pytest.raises(LongtailError, match="holds 20 images but .* holds 3 labels"):
        read_mnist_like(tmp_path, "train")
    labels.write_bytes(idx_bytes(np.full(20, 10, np.uint8), 0x801))
    with pytest.raises(LongtailError, match="has label 10 but the dataset has 10 classes"):
        read_mnist_like(tmp_path, "train")
    gz = tmp_path / "gz"
    gz.mkdir()
    (gz / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(payload)[:40])
    (gz / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(1, np.uint8), 0x801))
    )
    with pytest.raises(LongtailError, match=r"t10k-images-idx3-ubyte.gz is not a readable gzip"):
        read_mnist_like(gz, "test")


@pytest.mark.shared_data
def test_real_fashion_mnist(fashion_mnist_root: Path) -> None:
    train = read_mnist_like(fashion_mnist_root, "train")
    test = read_mnist_like(fashion_mnist_root, "test")
    assert train.images.shape == (60_000, 28, 28, 1) and test.images.shape == (10_000, 28, 28, 1)
    assert train.class_counts() == [6000] * 10 and test.class_counts() == [1000] * 10
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the published file order
    assert train.classes[9] == "Ankle boot"
    first = long_tail_indices(train.labels, long_tail_counts(6000, 10, 100), rule="first")
    assert len(first) == 14_886


# ---------------------------------------------------------------- split lists


def test_split_list_parse_and_decode(tmp_path: Path) -> None:
    root, list_file, labels = write_split_list(tmp_path, [4, 2, 3], num_classes=3)
    files = read_split_list(list_file, root)
    np.testing.assert_array_equal(files.labels, labels)
    assert files.num_classes == 3 and len(files.paths) == 9
    arrays = decode_file_list(files, size=16)
    assert arrays.images.shape == (9, 16, 16, 3) and arrays.classes == ["0", "1", "2"]
    assert arrays.class_counts() == [4, 2, 3]
    assert decode_file_list(files, size=8, channels=1).images.shape == (9, 8, 8, 1)


def test_split_list_centre_crop_geometry(tmp_path: Path) -> None:
    # Shorter side already = size: no resampling, so the crop is checkable pixel for pixel.
    tall = np.arange(30 * 16 * 3, dtype=np.int64).reshape(30, 16, 3) % 251
    Image.fromarray(tall.astype(np.uint8)).save(tmp_path / "tall.png")
    # A 2x upscale of a constant image stays constant: checks the resize target only.
    Image.fromarray(np.full((5, 8, 3), 77, np.uint8)).save(tmp_path / "wide.png")
    (tmp_path / "list.txt").write_text("tall.png 0\nwide.png 1\n")
    arrays = decode_file_list(read_split_list(tmp_path / "list.txt", tmp_path), size=16)
    top = round((30 - 16) / 2)
    np.testing.assert_array_equal(arrays.images[0], tall[top : top + 16].astype(np.uint8))
    assert np.all(arrays.images[1] == 77)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a.png", "expected 'relative/path label', got 1 fields"),
        ("a.png 1 2", ".*got 3 fields"),
        ("a.png one", "label 'one' is not an integer"),
        ("a.png -1", "label -1 is negative"),
    ],
)
def test_split_list_malformed_line_names_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "train.txt").write_text(f"a.png 0\n\n{line}\n")
    with pytest.raises(LongtailError, match=rf"train.txt:3: {message}"):
        read_split_list(tmp_path / "train.txt", tmp_path)


def test_split_list_missing_images(tmp_path: Path) -> None:
    root, list_file, _ = write_split_list(tmp_path, 2, num_classes=2)
    paths = read_split_list(list_file, root).paths
    paths[1].unlink()
    paths[3].unlink()
    with pytest.raises(
        LongtailError,
        match=rf"2 of 4 images .* are missing, the first is {re.escape(str(paths[1]))}",
    ):
        read_split_list(list_file, root)
    with pytest.raises(LongtailError, match="does not exist"):
        read_split_list(tmp_path / "val.txt", root)

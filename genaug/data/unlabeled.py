"""The unlabeled pool (``data.unlabeled``, SPEC §2): images from the same domain with no
labels, which generators may learn from (DPT-style pseudo-labels, the rest as the null
class) and which the control rows of ``eval-classifier`` use.

A pool is named by one of the registered kinds, tried in order:

* ``rest`` — the training-pool images that ``real_per_class`` / ``imbalance`` left out
  (labels dropped; their ids are recorded in splits.json);
* ``SOURCE:SPLIT`` — a split of a built-in source (``fashion-mnist:train``);
* a folder — every image file under it, any layout (class folders are not read as labels).

Images are decoded, converted and resized like the labeled data. The pool never holds a
val or test image: an overlap (same id within one source, or identical pixels) is an
error naming the image. Images identical to a labeled training image are dropped (they
are labeled already) and counted. ``data.unlabeled_max`` keeps a seeded subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from genaug.config import DataConfig
from genaug.data.base import LabeledData, Split, first_val_test_match, pixel_digests
from genaug.errors import DataError

PoolFn = Callable[[str, DataConfig, LabeledData], "tuple[Split, bool]"]  # -> (pool, ids share the data's namespace)


@dataclass(frozen=True)
class PoolKind:
    name: str
    matches: Callable[[str, DataConfig], bool]
    load: PoolFn


POOL_KINDS: list[PoolKind] = []


def register_pool(name: str, matches: Callable[[str, DataConfig], bool]) -> Callable[[PoolFn], PoolFn]:
    def deco(fn: PoolFn) -> PoolFn:
        POOL_KINDS.append(PoolKind(name, matches, fn))
        return fn

    return deco


def _unlabel(split: Split) -> Split:
    return Split(split.images, np.full(len(split), -1, dtype=np.int64), list(split.ids))


@register_pool("rest", lambda spec, cfg: spec == "rest")
def _rest(spec: str, cfg: DataConfig, data: LabeledData) -> tuple[Split, bool]:
    if data.held_out is None or not len(data.held_out):
        raise DataError("data.unlabeled=rest: no training-pool images are left out; set data.real_per_class or "
                        "data.imbalance, or name another pool")
    return _unlabel(data.held_out), True


def _source_split(spec: str, cfg: DataConfig) -> bool:
    from genaug.data import builtin  # noqa: F401  (registers the built-in sources)
    from genaug.data.registry import SOURCES

    name, sep, _ = spec.rpartition(":")
    return bool(sep) and name in SOURCES


@register_pool("source split", _source_split)
def _from_source(spec: str, cfg: DataConfig, data: LabeledData) -> tuple[Split, bool]:
    from genaug.data.registry import SOURCES, conform

    name, _, split = spec.rpartition(":")
    same = name == cfg.source
    raw = SOURCES[name](DataConfig(source=name, root=cfg.root if same else None, download=cfg.download))
    if split not in raw.pools:
        raise DataError(f"data.unlabeled={spec}: source '{name}' has no '{split}' split (it has {', '.join(raw.pools)})")
    pool = raw.pools[split]
    images = conform(pool.images, channels=data.channels, size=data.image_size)
    return _unlabel(Split(images, pool.labels, [f"{name}/{i}" if not same else i for i in pool.ids])), same


@register_pool("folder", lambda spec, cfg: True)
def _folder(spec: str, cfg: DataConfig, data: LabeledData) -> tuple[Split, bool]:
    from genaug.data.imagefolder import _decode, _list_files

    root = Path(spec).expanduser()
    if not root.is_dir():
        raise DataError(f"data.unlabeled: not 'rest', a built-in SOURCE:SPLIT or a folder: {spec}")
    files = _list_files(root)
    if not files:
        raise DataError(f"data.unlabeled folder {root} holds no image files")
    skipped: list[str] = []
    split = _decode([(f, -1) for f in files], root, data.channels, data.image_size, cfg.skip_bad_images, skipped)
    data.skipped.extend(skipped)
    return split, False


def _check(pool: Split, data: LabeledData, spec: str, same_ids: bool) -> np.ndarray:
    """Refuse val/test images in the pool; return the indices to keep (labeled
    training images dropped)."""
    for name in ("val", "test"):
        if same_ids and (common := set(pool.ids) & set(data.splits[name].ids)):
            raise DataError(f"data.unlabeled={spec} holds {len(common)} {name} image(s), e.g. {sorted(common)[0]}; the pool "
                            "may use training-pool images only (for the labeled source's own left-out images use 'rest')")
    hit = first_val_test_match(pool.images, data)
    if hit:
        raise DataError(f"data.unlabeled={spec}: {pool.ids[hit[0]]} is the {hit[1]} image {hit[2]}; "
                        "the pool may not hold val or test images")
    train = set(pixel_digests(data.splits["train"].images)) | (set(data.splits["train"].ids) if same_ids else set())
    return np.array([i for i, (d, name) in enumerate(zip(pixel_digests(pool.images), pool.ids))
                     if d not in train and name not in train], dtype=np.int64)


def attach_unlabeled(cfg: DataConfig, data: LabeledData) -> LabeledData:
    """Load ``cfg.unlabeled`` into ``data.unlabeled`` (checked, capped); no-op when unset."""
    spec = cfg.unlabeled
    if not spec:
        return data
    kind = next(k for k in POOL_KINDS if k.matches(spec, cfg))
    pool, same_ids = kind.load(spec, cfg, data)
    keep = _check(pool, data, spec, same_ids)
    found, dropped = len(pool), len(pool) - len(keep)
    if cfg.unlabeled_max is not None and len(keep) > cfg.unlabeled_max:
        rng = np.random.default_rng([cfg.split_seed, 5])
        keep = np.sort(keep[rng.permutation(len(keep))[: cfg.unlabeled_max]])
    if not len(keep):
        raise DataError(f"data.unlabeled={spec}: no images left (all {found} are labeled training images)")
    data.unlabeled = pool.subset(keep)
    data.unlabeled_info = {"source": spec, "kind": kind.name, "found": found, "dropped_labeled": dropped,
                           "cap": cfg.unlabeled_max, "n": len(keep)}
    return data

"""Fixed, seeded, disjoint train / val / test splits (SPEC §2).

Sources hand over whatever splits they have ("pools"). Missing ones are carved from
``train``, stratified per class, with ``numpy.random.default_rng(split_seed)``:
test first (only when the source has no official test split), then val. Finally
``real_per_class: K`` keeps K training images per class, chosen with the same seed.
The val and test splits never depend on K, so runs at different K share them.
"""

from __future__ import annotations

import numpy as np

from genaug.data.base import Split


def _carve(split: Split, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of ``split`` indices into (rest, carved)."""
    rest, carved = [], []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        idx = idx[rng.permutation(len(idx))]
        n = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)  # every class keeps >=1 image on each side
        else:
            n = 0
        carved.append(idx[:n])
        rest.append(idx[n:])
    return np.sort(np.concatenate(rest)), np.sort(np.concatenate(carved))


def subset_per_class(split: Split, k: int, seed: int) -> Split:
    """Keep at most ``k`` images per class (seeded; a class with fewer keeps all)."""
    rng = np.random.default_rng([seed, 1])
    keep = []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        keep.append(np.sort(idx[rng.permutation(len(idx))[:k]]))
    return split.subset(np.sort(np.concatenate(keep)))


def make_splits(
    pools: dict[str, Split],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    real_per_class: int | None = None,
) -> dict[str, Split]:
    """Complete ``pools`` to train/val/test and apply ``real_per_class``."""
    train = pools["train"]
    out: dict[str, Split] = {}
    if "test" in pools:
        out["test"] = pools["test"]
    else:
        rest, test = _carve(train, test_fraction, np.random.default_rng([seed, 2]))
        out["test"], train = train.subset(test), train.subset(rest)
    if "val" in pools:
        out["val"] = pools["val"]
    else:
        rest, val = _carve(train, val_fraction, np.random.default_rng([seed, 3]))
        out["val"], train = train.subset(val), train.subset(rest)
    if real_per_class is not None:
        train = subset_per_class(train, real_per_class, seed)
    out["train"] = train
    return {name: out[name] for name in ("train", "val", "test")}

"""Fixed, seeded, disjoint train / val / test splits (SPEC §2).

Sources hand over whatever splits they have ("pools"). Missing ones are carved from
``train``, stratified per class, with ``numpy.random.default_rng(split_seed)``:
test first (only when the source has no official test split), then val. Finally
``real_per_class: K`` keeps K training images per class, chosen with the same seed, and
``imbalance: rho`` then makes the training split long-tailed: the i-th of C classes
keeps ``round(n_max * rho ** (i / (C - 1)))`` images (at least 1), the exponential
profile of the CIFAR-10-LT benchmarks. ``hold_out: h`` last sets aside a share h of each
class's training images (every class keeps at least one) as held-out real images. The val and test splits never depend on K or
rho, so runs at different settings share them (and test stays balanced).
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


def subset_per_class(split: Split, k: int | dict[int, int], seed: int) -> Split:
    """Keep at most ``k`` images per class, or ``k[c]`` for class c (seeded; a class with
    fewer keeps all)."""
    rng = np.random.default_rng([seed, 1])
    keep = []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        keep.append(np.sort(idx[rng.permutation(len(idx))[: k if isinstance(k, int) else k[int(c)]]]))
    return split.subset(np.sort(np.concatenate(keep)))


def long_tail_counts(counts: dict[int, int], ratio: float) -> dict[int, int]:
    """Per-class sizes of an exponential long tail: class order i = 0..C-1 keeps
    ``n_max * ratio ** (i / (C - 1))`` (never more than it has, at least 1)."""
    classes, n_max = sorted(counts), max(counts.values())
    steps = max(1, len(classes) - 1)
    return {c: max(1, min(counts[c], int(round(n_max * ratio ** (i / steps))))) for i, c in enumerate(classes)}


def make_splits(
    pools: dict[str, Split],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    real_per_class: int | None = None,
    imbalance: float | None = None,
    hold_out: float = 0.0,
) -> tuple[dict[str, Split], Split]:
    """Complete ``pools`` to train/val/test and apply ``real_per_class``, ``imbalance`` and
    ``hold_out`` (that share of each class's remaining training images set aside).
    Also returns the held-out part of the training pool: the images those three left out
    (never val or test), for the oracle row and the ``rest`` unlabeled pool."""
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
    pool = train
    if real_per_class is not None:
        train = subset_per_class(train, real_per_class, seed)
    if imbalance is not None and imbalance < 1:
        counts = {int(c): int(n) for c, n in zip(*np.unique(train.labels, return_counts=True))}
        train = subset_per_class(train, long_tail_counts(counts, imbalance), seed)
    if hold_out > 0:
        rest, _ = _carve(train, hold_out, np.random.default_rng([seed, 4]))
        train = train.subset(rest)
    out["train"] = train
    kept = set(train.ids)
    held_out = pool.subset(np.array([i for i, name in enumerate(pool.ids) if name not in kept], dtype=np.int64))
    return {name: out[name] for name in ("train", "val", "test")}, held_out

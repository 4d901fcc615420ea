"""The in-memory data set every source produces.

Generators in genaug work at 28-64 px, so sources are decoded once, resized by
:func:`genaug.data.images.resize_square` and held as uint8 arrays. Every image has a
stable id (a file path relative to the root, or ``split:index`` for array sources) so
split membership can be saved and re-checked with other code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


@dataclass
class Split(Dataset):
    """Labeled images of one split. ``images``: uint8 ``(N, H, W, C)``."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]

    def __post_init__(self) -> None:
        assert self.images.dtype == np.uint8 and self.images.ndim == 4, self.images.shape
        assert len(self.images) == len(self.labels) == len(self.ids)
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.images[i]).permute(2, 0, 1)  # (C, H, W) uint8
        return img, int(self.labels[i])

    def subset(self, index: np.ndarray) -> "Split":
        index = np.asarray(index, dtype=np.int64)
        return Split(self.images[index], self.labels[index], [self.ids[i] for i in index])

    def counts(self, num_classes: int) -> list[int]:
        return np.bincount(self.labels, minlength=num_classes).tolist()


@dataclass
class LabeledData:
    """A data source after loading and splitting."""

    name: str
    classes: list[str]
    splits: dict[str, Split]
    skipped: list[str] = field(default_factory=list)  # bad files skipped (skip_bad_images)
    official_test: bool = False
    held_out: Split | None = None  # training-pool images left out by real_per_class / imbalance
    unlabeled: Split | None = None  # the unlabeled pool (data.unlabeled); its labels are all -1
    unlabeled_info: dict = field(default_factory=dict)  # where the pool came from, what was dropped

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.splits["train"].images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.splits["train"].images.shape[3])

    def membership(self) -> dict:
        """Split membership, for ``runs/<run>/splits.json``."""
        return {
            "source": self.name,
            "classes": self.classes,
            "splits": {name: {"ids": s.ids, "labels": s.labels.tolist()} for name, s in self.splits.items()},
            "held_out": {"ids": h.ids, "labels": h.labels.tolist()} if (h := self.held_out) is not None else None,
            "unlabeled": {**self.unlabeled_info, "ids": u.ids} if (u := self.unlabeled) is not None else None,
        }


def pixel_digests(images: np.ndarray) -> list[bytes]:
    """One SHA-256 per image of its decoded pixels: identical images, whatever their files."""
    return [hashlib.sha256(img.tobytes()).digest() for img in images]


def first_val_test_match(images: np.ndarray, data: LabeledData) -> tuple[int, str, str] | None:
    """The first of ``images`` whose pixels equal a val or test image, as (its index, that
    split, that image's id); None when there is none. Extra images (an oracle folder, an
    unlabeled pool) must never hold one."""
    held = {d: (name, data.splits[name].ids[i]) for name in ("val", "test")
            for i, d in enumerate(pixel_digests(data.splits[name].images))}
    return next(((i, *held[d]) for i, d in enumerate(pixel_digests(images)) if d in held), None)

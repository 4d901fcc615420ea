"""What a classifier run trains on: the data streams (:class:`EvalData`: the real
train / val tensors, the extra sets, the unlabeled pool, the test split that only
:func:`genaug.classify.trainer.test_metrics` reads) and the configuration of one run's
streams (:class:`Arm`: how real images are drawn and augmented, what fills the extra
slots, an unlabeled stream, soft targets). Loading them is the caller's business
(:mod:`genaug.evaluate.data` for the evaluation, :mod:`genaug.judge` for the judge), so
the trainer depends on no stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class EvalData:
    classes: list[str]
    channels: int
    size: int
    train_x: torch.Tensor  # (N, C, H, W) uint8, the real training split (after real_per_class)
    train_y: torch.Tensor  # (N,)
    val_x: torch.Tensor
    val_y: torch.Tensor
    test: object  # a Split; read only when testing
    syn_x: torch.Tensor  # (M, C, H, W) uint8, kept synthetic images (M may be 0)
    syn_y: torch.Tensor
    synthetic: dict  # where the synthetic images came from
    oracle_x: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.uint8))  # held-out real images
    oracle_y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    oracle: dict | None = None  # where the oracle's images came from; None = no oracle row
    pool_x: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.uint8))  # confident pool images
    pool_y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # their pseudo-labels
    pool: dict | None = None  # the pseudo-labeled pool's summary; None = no pool rows
    unlabeled_x: torch.Tensor | None = None  # (P, C, H, W) uint8, every pool image (FixMatch's unlabeled stream)
    syn_teacher: torch.Tensor | None = None  # (M, K) float: the teacher's class probabilities of each synthetic image
    teacher: dict | None = None  # which teacher, its content hash, how often it disagrees with the condition
    unlabeled: dict | None = None  # the pool's source, size and content hash
    train_ids: list[str] = field(default_factory=list)  # ids of the real training images (train_x order)
    syn_source: list[str | None] = field(default_factory=list)  # per synthetic image: the real image it varies, if any


@dataclass(frozen=True)
class Arm:
    name: str
    title: str  # the row's name in tables
    explains: str  # one sentence for the report
    sampling: str  # "uniform" | "balanced"
    augment: str
    extra: tuple[torch.Tensor, torch.Tensor] | None = None  # (images (M, C, H, W) uint8, labels) for the extra slots
    extra_info: dict | None = None  # where the extra images came from (hash, n, per class)
    extra_split: int | None = None  # extra = two sources, [0, split) and [split, M): each slot picks one evenly
    replace: tuple[float, list[torch.Tensor]] | None = None  # (p, per real image the indices of its variants in syn_x)
    unlabeled: torch.Tensor | None = None  # (P, C, H, W) uint8: an unlabeled stream the arm's loss learns from (FixMatch)
    targets: torch.Tensor | None = None  # (M, K) float: soft labels of the extra images instead of their classes

    @property
    def shares(self) -> bool:
        """Whether the arm runs at each share r > 0 (else at r = 0 only)."""
        return self.extra is not None


def split_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    """A :class:`~genaug.data.base.Split`'s images as uint8 ``(N, C, H, W)`` and its labels ``(N,)``."""
    return torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(split.labels)

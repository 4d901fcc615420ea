"""What the classifier sees: real train/val tensors, the kept synthetic images, and
the test split, which only :func:`genaug.evaluate.train.test_metrics` reads."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genaug.config import Config
from genaug.data import load_data
from genaug.errors import GenaugError
from genaug.io import stable_hash


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


def _tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(split.labels)


def load_eval_data(cfg: Config, *, need_synthetic: bool) -> EvalData:
    data = load_data(cfg.data)
    tx, ty = _tensors(data.splits["train"])
    vx, vy = _tensors(data.splits["val"])
    if len(vx) == 0:
        raise GenaugError("eval-classifier needs a validation split (data.val_fraction > 0)")
    sx, sy, info = load_synthetic(cfg, data.classes, data.channels, data.image_size) if need_synthetic else (
        torch.zeros(0, data.channels, data.image_size, data.image_size, dtype=torch.uint8),
        torch.zeros(0, dtype=torch.long), {"n": 0})
    return EvalData(data.classes, data.channels, data.image_size, tx, ty, vx, vy, data.splits["test"], sx, sy, info)


def load_synthetic(cfg: Config, classes: list[str], channels: int, size: int):
    """Kept images of ``gen_dataset/<run>`` as uint8 tensors, checked against the data."""
    from genaug.synthetic.store import Store

    store = Store(cfg.gen_dir(), classes)
    rows = [r for r in store.read_rows() if r.get("kept")]
    if not rows:
        raise GenaugError(f"no kept synthetic images in {cfg.gen_dir()}: run 'genaug sample' first "
                          "(or use --mix 0 for the real-only baseline)")
    if rows[0].get("class_name") is not None and any(r["class_name"] != classes[r["label"]] for r in rows):
        raise GenaugError(f"{cfg.gen_dir()} was sampled for other classes than the configured data's")
    images = []
    for r in rows:
        img = store.read_png(r["label"], r["id"])
        if img is None:
            raise GenaugError(f"synthetic image {r['id']} is missing or unreadable: rerun 'genaug sample'")
        if img.shape != (channels, size, size):
            raise GenaugError(f"synthetic image {r['id']} is {tuple(img.shape)}, the data is {(channels, size, size)}")
        images.append(img)
    per_class = torch.bincount(torch.tensor([r["label"] for r in rows]), minlength=len(classes)).tolist()
    info = {"dir": str(cfg.gen_dir()), "n": len(rows), "per_class": per_class,
            "ids_hash": stable_hash([r["id"] for r in rows])}
    return torch.stack(images), torch.tensor([r["label"] for r in rows]), info

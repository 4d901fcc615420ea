"""What the classifier sees: real train/val tensors, the extra sets that fill the
extra slots (synthetic images, the oracle's held-out real images), and the test split,
which only :func:`genaug.classify.trainer.test_metrics` reads."""

from __future__ import annotations

import numpy as np
import torch

from genaug.classify.streams import EvalData, split_tensors
from genaug.config import Config
from genaug.data import load_data
from genaug.data.base import Split
from genaug.errors import GenaugError
from genaug.io import content_hash


def load_eval_data(cfg: Config, *, need_synthetic: bool) -> EvalData:
    data = load_data(cfg.data)
    tx, ty = split_tensors(data.splits["train"])
    vx, vy = split_tensors(data.splits["val"])
    if len(vx) == 0:
        raise GenaugError("eval-classifier needs a validation split (data.val_fraction > 0)")
    if not need_synthetic:
        sx, sy, info = (torch.zeros(0, data.channels, data.image_size, data.image_size, dtype=torch.uint8),
                        torch.zeros(0, dtype=torch.long), {"n": 0})
    elif cfg.eval.synthetic_dir:
        sx, sy, info = load_external(cfg.eval.synthetic_dir, data.classes, data.channels, data.image_size)
    else:
        sx, sy, info = load_synthetic(cfg, data.classes, data.channels, data.image_size)
    ed = EvalData(data.classes, data.channels, data.image_size, tx, ty, vx, vy, data.splits["test"], sx, sy,
                  {k: v for k, v in info.items() if k != "sources"}, train_ids=list(data.splits["train"].ids),
                  syn_source=info.get("sources") or [None] * len(sy))
    if need_synthetic and cfg.eval.oracle:
        _attach_oracle(cfg, ed, data)
    if need_synthetic and data.unlabeled is not None:
        _attach_pool(cfg, ed, data)
    return ed


def attach_unlabeled(ed: EvalData, data) -> None:
    """Every pool image as FixMatch's unlabeled stream, with its source, size and content hash."""
    ed.unlabeled_x = torch.from_numpy(data.unlabeled.images).permute(0, 3, 1, 2).contiguous()
    ed.unlabeled = {"source": data.unlabeled_info["source"], "n": len(ed.unlabeled_x),
                    "ids_hash": content_hash(data.unlabeled.images, np.zeros(len(ed.unlabeled_x), dtype=np.int64))}


def _attach_pool(cfg: Config, ed: EvalData, data) -> None:
    """The pool images whose pseudo-label (from the run's judge, trained on the labeled
    split) has confidence >= ``pool.threshold``, with those labels: the "+ pseudo-labeled
    pool" control. Their true labels, if any exist, are never read."""
    from genaug.pseudo import ensure_pool_labels

    attach_unlabeled(ed, data)
    pseudo = ensure_pool_labels(cfg, data)
    keep = pseudo.confident(cfg.pool.threshold)
    if not len(keep):
        print(f"no pool image has pseudo-label confidence >= {cfg.pool.threshold:g}: no pool rows")
        return
    images, labels = data.unlabeled.images[keep], pseudo.labels[keep]
    ed.pool_x, ed.pool_y = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    ed.pool = {"source": data.unlabeled_info["source"], "n": len(keep), "pool_size": len(pseudo.labels),
               "threshold": cfg.pool.threshold, "per_class": np.bincount(labels, minlength=len(ed.classes)).tolist(),
               "ids_hash": content_hash(images, labels)}


def load_synthetic(cfg: Config, classes: list[str], channels: int, size: int):
    """Kept images of ``gen_dataset/<run>`` as uint8 tensors, checked against the data."""
    from genaug.synthetic.store import Store

    store = Store(cfg.gen_dir(), classes)
    rows = [r for r in store.read_rows() if r.get("kept")]
    if not rows:
        tried = sum(1 for _ in store.read_rows())
        why = (f"none of the {tried} generated images passed the filters (see fidelity.json: lower "
               "sample.min_confidence, train the generator longer, or sample with --no-filter)" if tried else
               "run 'genaug sample' first")
        raise GenaugError(f"no kept synthetic images in {cfg.gen_dir()}: {why}; or use --mix 0 for the real-only rows")
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
    images, labels = torch.stack(images), torch.tensor([r["label"] for r in rows])
    per_class = torch.bincount(labels, minlength=len(classes)).tolist()
    info = {"dir": str(cfg.gen_dir()), "n": len(rows), "per_class": per_class, "external": False,
            # keyed by pixels, not ids: ids repeat across runs and re-samples (c0000_0000000, ...)
            "ids_hash": content_hash(images, labels), "sources": [r.get("source_id") for r in rows]}
    return images, labels, info


def load_external(root: str, classes: list[str], channels: int, size: int):
    """Any labeled ImageFolder as the synthetic set (``--synthetic DIR``): no manifest;
    keyed by its content hash, so changed images never reuse old rows."""
    from genaug.data.imagefolder import read_labeled_folder

    split = read_labeled_folder(root, classes, channels=channels, size=size, what="--synthetic")
    x, y = split_tensors(split)
    info = {"dir": str(root), "n": len(y), "per_class": torch.bincount(y, minlength=len(classes)).tolist(),
            "external": True, "ids_hash": content_hash(split.images, split.labels)}
    return x, y, info


def _attach_oracle(cfg: Config, ed: EvalData, data) -> None:
    """The oracle's images: per class as many held-out real images as the synthetic set's
    fullest class has (fewer where fewer are held out), seeded; from ``eval.oracle_dir``
    or the training-pool images ``real_per_class`` / ``imbalance`` left out. Never val or
    test. Every class gets them, also those the generator could not fill: the oracle is
    what a perfect generator would give, the positive control of the evaluation."""
    if cfg.eval.oracle_dir:
        from genaug.data.imagefolder import read_labeled_folder

        pool = read_labeled_folder(cfg.eval.oracle_dir, ed.classes, channels=ed.channels, size=ed.size,
                                   what="eval.oracle_dir")
        _refuse_overlap(pool, data, cfg.eval.oracle_dir)
        source = str(cfg.eval.oracle_dir)
    elif data.held_out is not None and len(data.held_out):
        pool, source = data.held_out, "held-out training pool"
    else:
        return
    rng = np.random.default_rng([cfg.data.split_seed, 4])
    pick = []
    n = max(ed.synthetic["per_class"])
    for c in range(len(ed.classes)):
        idx = np.flatnonzero(pool.labels == c)
        pick.append(np.sort(idx[rng.permutation(len(idx))[:n]]))
    chosen = pool.subset(np.concatenate(pick))
    if not len(chosen):
        return
    ed.oracle_x, ed.oracle_y = split_tensors(chosen)
    ed.oracle = {"source": source, "n": len(chosen), "per_class": chosen.counts(len(ed.classes)), "ids": chosen.ids,
                 "ids_hash": content_hash(chosen.images, chosen.labels)}


def _refuse_overlap(pool: Split, data, where: str) -> None:
    """An oracle folder must not hold val or test images (byte-identical after decoding)."""
    from genaug.data.base import first_val_test_match

    hit = first_val_test_match(pool.images, data)
    if hit:
        raise GenaugError(f"eval.oracle_dir {where}: {pool.ids[hit[0]]} is the {hit[1]} image {hit[2]}; "
                          "the oracle may use training-pool images only")

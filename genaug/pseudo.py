"""Pseudo-labels for the unlabeled pool (SPEC §2, §3; DPT-style semi-supervised generation).

A registered labeler (``pool.labeler``) labels every pool image: the judge — trained on
the labeled split only, optionally improved on the pool by FixMatch rounds
(``judge.self_training``, the one trainer's FixMatch stream) — or, for DPT's loop, the
evaluation's FixMatch learner (:mod:`genaug.evaluate.learner`). The labels
and confidences go to ``runs/<run>/judge/pool_labels.jsonl`` (one line per image: id,
label, confidence) next to ``pool_labels.json`` (the judge key they belong to, counts),
so every stage (generator training, the control rows of eval-classifier) reads the same
labels and a changed judge or pool relabels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from accelerate import PartialState

from genaug.config import Config
from genaug.data.base import LabeledData
from genaug.errors import GenaugError
from genaug.io import atomic_write_json, atomic_write_text, read_jsonl
from genaug.runs import reuse_cached

LABELS, LABELS_META = "pool_labels.jsonl", "pool_labels.json"


@dataclass
class PoolLabels:
    ids: list[str]
    labels: np.ndarray  # (N,) int64, the judge's argmax
    confidence: np.ndarray  # (N,) float, the judge's probability of that label

    def confident(self, threshold: float) -> np.ndarray:
        """Indices of pool images whose pseudo-label has confidence >= ``threshold``."""
        return np.flatnonzero(self.confidence >= threshold)

    def conditioning(self, threshold: float, null: int) -> np.ndarray:
        """The label a generator trains each pool image with: its pseudo-label when
        confident, else ``null`` (the classifier-free-guidance null class)."""
        return np.where(self.confidence >= threshold, self.labels, null)


@dataclass(frozen=True)
class Labeler:
    """Who labels the pool (``pool.labeler``): ``key(cfg)`` names the labels (a changed key
    relabels), ``probs(cfg, data)`` gives the (N, K) class probabilities of the pool images
    and a dict that describes the labeler (``val_accuracy`` at least)."""

    key: Callable[[Config], str]
    probs: Callable[[Config, LabeledData], tuple[np.ndarray, dict]]


LABELERS: dict[str, Labeler] = {}


def register_labeler(name: str, labeler: Labeler) -> Labeler:
    LABELERS[name] = labeler
    return labeler


def _judge_key(cfg: Config) -> str:
    from genaug.judge import judge_key

    return judge_key(cfg)


def _judge_probs(cfg: Config, data: LabeledData) -> tuple[np.ndarray, dict]:
    from genaug.judge import ensure_judge, load_judge, predict

    model, meta = load_judge(ensure_judge(cfg, data))
    probs = predict(model, torch.from_numpy(data.unlabeled.images).permute(0, 3, 1, 2), meta["in_chans"])
    return probs, {"labeler": "judge", "model": meta["model"], "val_accuracy": meta["val_accuracy"]}


register_labeler("judge", Labeler(_judge_key, _judge_probs))


def labeler(cfg: Config) -> Labeler:
    name = cfg.pool.labeler
    if name not in LABELERS:  # "fixmatch" registers itself in genaug.evaluate.learner, which the stages import
        raise GenaugError(f"pool.labeler {name!r} is not registered (known: {', '.join(sorted(LABELERS))})")
    return LABELERS[name]


def ensure_pool_labels(cfg: Config, data: LabeledData) -> PoolLabels | None:
    """The pool's pseudo-labels (None without a pool), labeling it with the run's
    ``pool.labeler`` when missing or stale and no run of ``paths.reuse_from`` holds them
    with its key (on rank 0 under ``accelerate launch``; the others wait). They live in
    ``runs/<run>/judge/`` whoever the labeler is."""
    if data.unlabeled is None:
        return None
    judge_dir, state = cfg.run_dir() / "judge", PartialState()
    if state.is_main_process:
        # the labeler and the pool's pixels: a folder pool whose files changed under the same path is relabeled
        match = {"key": labeler(cfg).key(cfg), "pool_hash": pool_hash(data)}
        if not reuse_cached(cfg, f"judge/{LABELS_META}", match, also=[f"judge/{LABELS}"]):
            _label_pool(cfg, data, judge_dir)
    state.wait_for_everyone()
    rows = read_jsonl(judge_dir / LABELS)
    if [r["id"] for r in rows] != data.unlabeled.ids:
        raise AssertionError(f"{judge_dir / LABELS} does not match the pool")  # written from this pool just above
    return PoolLabels([r["id"] for r in rows], np.array([r["label"] for r in rows], dtype=np.int64),
                      np.array([r["confidence"] for r in rows], dtype=np.float64))


def pool_hash(data: LabeledData) -> str:
    """Hash of the pool's ids and pixels."""
    from genaug.io import content_hash, stable_hash

    return stable_hash([data.unlabeled.ids, content_hash(data.unlabeled.images, data.unlabeled.labels)])


def _label_pool(cfg: Config, data: LabeledData, judge_dir: Path) -> None:
    lab = labeler(cfg)
    probs, info = lab.probs(cfg, data)  # (N, K)
    labels, conf = probs.argmax(1), probs.max(1)
    text = "".join(json.dumps({"id": i, "label": int(y), "confidence": round(float(c), 6)}) + "\n"
                   for i, y, c in zip(data.unlabeled.ids, labels, conf))
    judge_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(judge_dir / LABELS, text)
    atomic_write_json(judge_dir / LABELS_META, {
        "key": lab.key(cfg), "pool_hash": pool_hash(data), "n": len(labels),
        "per_class": np.bincount(labels, minlength=data.num_classes).tolist(), "mean_confidence": float(conf.mean()),
        "labeler": info, "judge_val_accuracy": info["val_accuracy"]})
    acc = "n/a" if info["val_accuracy"] is None else f"{info['val_accuracy']:.4f}"
    print(f"pseudo-labeled {len(labels)} pool images with the {info['labeler']} (mean confidence {conf.mean():.3f}; "
          f"its val accuracy {acc}); labels in {judge_dir / LABELS}")

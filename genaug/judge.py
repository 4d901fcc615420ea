"""The judge: a small timm classifier trained on the real training split only.

It scores synthetic images for the confidence filter (SPEC §4), provides the domain
feature space for FID/KID (:mod:`genaug.fidelity`), and measures a generator's
conditional accuracy. Cached in ``runs/<run>/judge/`` as safetensors + JSON, keyed by
the hash of the data and judge config, so it is retrained only when those change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState

import genaug.models  # noqa: F401  (registers the small timm models)
from genaug.classify.streams import Arm, EvalData, split_tensors
from genaug.classify.trainer import fit
from genaug.classify.views import to_input
from genaug.config import Config, EvalConfig
from genaug.data.base import LabeledData, Split
from genaug.evaluate.classifier import InputSpec, create_classifier
from genaug.io import atomic_save_tensors, atomic_write_json, load_tensors, stable_hash, sweep_temp
from genaug.runs import config_hash, reuse_cached

WEIGHTS, META = "model.safetensors", "judge.json"
# how the judge's model is trained (2: the one classifier trainer; 1: the judge's own loop);
# in the keys of everything such a model measures (the judge, the quality gate's probe)
TRAINER_VERSION = 2


@torch.no_grad()
def accuracy(model: torch.nn.Module, split: Split, channels: int, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(split), batch_size):
        x = torch.from_numpy(split.images[start : start + batch_size]).permute(0, 3, 1, 2)
        pred = model(to_input(x, channels)).argmax(1)
        correct += int((pred.numpy() == split.labels[start : start + batch_size]).sum())
    return correct / max(1, len(split))


def create_judge_model(name: str, *, in_chans: int, num_classes: int, image_size: int) -> torch.nn.Module:
    """The judge's timm model, built as the trainer builds it (:func:`create_classifier` of
    its :func:`judge_config`), so saved weights and the loaded model always agree."""
    return create_classifier(EvalConfig(model=name), num_classes=num_classes, channels=in_chans,
                             data_size=image_size)[0]


def judge_config(cfg: Config) -> Config:
    """The judge as a configuration of the one classifier trainer (:func:`genaug.classify.
    trainer.fit`): ``judge.model`` trained ``judge.steps`` steps (a fixed budget, cosine
    after a warm-up of min(50, steps / 10)), AdamW (weight decay 0.05), label smoothing
    0.1, uniform draws with random shifts, no EMA, the best val accuracy of every
    ``judge.eval_every`` steps kept. Its self-training rounds are the trainer's FixMatch
    stream with one pool image per labeled one (mu 1) at ``judge.self_training_threshold``
    and ``_weight``."""
    jc = cfg.judge
    ec = EvalConfig(model=jc.model, steps=jc.steps, batch_size=jc.batch_size, lr=jc.lr, eval_every=jc.eval_every,
                    warmup_steps=min(50, jc.steps // 10), optimizer="adamw", weight_decay=0.05, label_smoothing=0.1,
                    augment="shift", real_sampling="uniform", ema=False, channels_last=True, fixmatch_mu=1,
                    fixmatch_threshold=jc.self_training_threshold, fixmatch_weight=jc.self_training_weight)
    return cfg.model_copy(update={"eval": ec})


def _judge_streams(data: LabeledData) -> EvalData:
    """The labeled training and val splits, no extra images, and no test split: the judge never sees it."""
    (tx, ty), (vx, vy) = split_tensors(data.splits["train"]), split_tensors(data.splits["val"])
    none = torch.zeros(0, data.channels, data.image_size, data.image_size, dtype=torch.uint8)
    return EvalData(data.classes, data.channels, data.image_size, tx, ty, vx, vy, None, none,
                    torch.zeros(0, dtype=torch.long), {"n": 0})


def _judge_spec(data: LabeledData) -> InputSpec:
    """The judge's input: pixels in [-1, 1] (:func:`~genaug.classify.views.to_input`), which
    every reader of a judge (:func:`predict`, FID features) feeds it, whatever its model."""
    return InputSpec(size=data.image_size, channels=data.channels, mean=(0.5,) * data.channels,
                     std=(0.5,) * data.channels)


def train_judge(cfg: Config, data: LabeledData, out_dir: Path, desc: str = "judge") -> dict:
    """Train on ``data.splits['train']`` (then, with ``judge.self_training`` and a pool,
    FixMatch rounds on the pool, each from the best weights so far), keep the best
    weights by val accuracy, save them."""
    jcfg, ed, spec = judge_config(cfg), _judge_streams(data), _judge_spec(data)
    plain = Arm("judge", "judge", "", "uniform", "shift")
    run = fit(jcfg, ed, 0.0, cfg.seed, plain, spec=spec, desc=desc)
    best, rounds, supervised = run, [], run.row["val_acc"]
    if cfg.judge.self_training and data.unlabeled is not None:
        pool = Arm("judge_self_training", "judge", "", "uniform", "shift", unlabeled=split_tensors(data.unlabeled)[0])
        for rnd in range(1, cfg.judge.self_training + 1):
            run = fit(jcfg, ed, 0.0, cfg.seed + rnd, pool, init=best.state, spec=spec,
                      desc=f"judge self-training {rnd}")
            rounds.append({"round": rnd, "val_accuracy": run.row["val_acc"],
                           "confident_share": run.row.get("pool_confident_share")})
            print(f"judge self-training round {rnd}: val accuracy {_acc(run.row['val_acc'])}, "
                  f"{rounds[-1]['confident_share']:.2f} of pool draws confident")
            if run.row["val_acc"] is None or run.row["val_acc"] > best.row["val_acc"]:  # no val: the last round
                best = run
    meta = {
        "model": cfg.judge.model, "in_chans": data.channels, "num_classes": data.num_classes,
        "image_size": data.image_size, "classes": data.classes, "val_accuracy": best.row["val_acc"],
        "train_images": len(ed.train_x), "steps": cfg.judge.steps, "key": judge_key(cfg),
    }
    if rounds:
        meta["self_training"] = {"supervised_val_accuracy": supervised, "rounds": rounds,
                                 "pool_images": len(data.unlabeled)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(out_dir / WEIGHTS, {k: v.cpu() for k, v in best.state.items()})
    atomic_write_json(out_dir / META, meta)
    return meta


def _acc(value: float | None) -> str:
    return "n/a (no val split: the last weights kept)" if value is None else f"{value:.4f}"


def judge_key(cfg: Config) -> str:
    """The judge's cache key: its data, settings and seed, and the trainer's version."""
    return stable_hash({"config": config_hash(cfg, "data", "judge", "seed"), "trainer": TRAINER_VERSION})


def ensure_judge(cfg: Config, data: LabeledData) -> Path:
    """The run's judge directory, training the judge first when missing or stale and no
    run of ``paths.reuse_from`` holds one with its key (on rank 0 under ``accelerate
    launch``; the other processes wait for it)."""
    out, state = cfg.run_dir() / "judge", PartialState()
    if state.is_main_process:
        sweep_temp(out)
        if not reuse_cached(cfg, f"judge/{META}", {"key": judge_key(cfg)}, also=[f"judge/{WEIGHTS}"]):
            meta = train_judge(cfg, data, out)
            print(f"judge {meta['model']}: val accuracy {_acc(meta['val_accuracy'])} on {len(data.splits['val'])} images")
    state.wait_for_everyone()
    return out


def load_judge(judge_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the judge from its JSON + safetensors (no pickles)."""
    judge_dir = Path(judge_dir)
    meta = json.loads((judge_dir / META).read_text())
    model = create_judge_model(meta["model"], in_chans=meta["in_chans"], num_classes=meta["num_classes"],
                               image_size=meta["image_size"])
    model.load_state_dict(load_tensors(judge_dir / WEIGHTS))
    return model.eval(), meta


@torch.no_grad()
def predict(model: torch.nn.Module, images: torch.Tensor, channels: int, batch_size: int = 512) -> np.ndarray:
    """Class probabilities ``(N, K)`` for uint8 images ``(N, C, H, W)``."""
    model.eval()
    out = [F.softmax(model(to_input(images[i : i + batch_size], channels)), dim=1) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def conditional_accuracy(images: torch.Tensor, labels: torch.Tensor, judge_dir: str | Path) -> float:
    """Share of generated images (uint8 (N, C, H, W)) that the judge assigns to their
    conditioning label: does the generator draw the class it was asked for?"""
    return conditioning(images, labels, judge_dir)[0]


def conditioning(images: torch.Tensor, labels: torch.Tensor, judge_dir: str | Path) -> tuple[float, list[float | None]]:
    """(overall, per class) agreement of the judge with the conditioning labels (N,); a
    class with no image in ``labels`` gets None."""
    model, meta = load_judge(judge_dir)
    hit = predict(model, images, meta["in_chans"]).argmax(1) == labels.numpy()
    return float(hit.mean()), per_class_mean(hit, labels.numpy(), len(meta["classes"]))


def per_class_mean(hit: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """Mean of the booleans ``hit`` per label (None for a label that never occurs), rounded to 4 places."""
    n = np.bincount(labels, minlength=num_classes)
    ok = np.bincount(labels, weights=hit.astype(float), minlength=num_classes)
    return [round(float(o / c), 4) if c else None for o, c in zip(ok, n)]

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
import timm
import torch
import torch.nn.functional as F
from accelerate import PartialState
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from genaug.progress import progress

import genaug.models  # noqa: F401  (registers the small timm models)
from genaug.classify.views import random_shift, to_input
from genaug.classify.fixmatch import self_train
from genaug.config import Config
from genaug.data.base import LabeledData, Split
from genaug.io import atomic_save_tensors, atomic_write_json, load_tensors, sweep_temp
from genaug.runs import config_hash

WEIGHTS, META = "model.safetensors", "judge.json"


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
    """timm model; genaug's small ResNets also take the input size (for their data config)."""
    kw = {"img_size": image_size} if name.startswith("resnet_small") else {}
    return timm.create_model(name, in_chans=in_chans, num_classes=num_classes, **kw)


def train_judge(cfg: Config, data: LabeledData, out_dir: Path, desc: str = "judge") -> dict:
    """Train on ``data.splits['train']`` (then, with ``judge.self_training`` and a pool,
    FixMatch rounds on the pool), keep the best weights by val accuracy, save them."""
    jc = cfg.judge
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = create_judge_model(jc.model, in_chans=data.channels, num_classes=data.num_classes, image_size=data.image_size)
    # Channels-last weights while training: mkldnn picks NHWC kernels, ~25% faster on CPU.
    # The loaded judge stays contiguous, whose scores do not depend on the batch size.
    model = model.to(memory_format=torch.channels_last)

    def optimiser():
        opt = create_optimizer_v2(model, opt="adamw", lr=jc.lr, weight_decay=0.05)
        return opt, CosineLRScheduler(opt, t_initial=jc.steps, warmup_t=min(50, jc.steps // 10), lr_min=jc.lr * 0.01)

    best = {"acc": -1.0, "state": None}

    def consider(m: torch.nn.Module) -> float:
        """Val accuracy of ``m``; its weights are kept when they are the best so far."""
        acc = accuracy(m, data.splits["val"], data.channels)
        if acc > best["acc"]:
            best.update(acc=acc, state={k: v.detach().clone() for k, v in m.state_dict().items()})
        return acc

    opt, sched = optimiser()
    train = data.splits["train"]
    images = torch.from_numpy(train.images).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    labels = torch.from_numpy(train.labels)
    bar = progress(range(jc.steps), desc=desc, unit="step", leave=False)
    for step in bar:
        model.train()
        idx = torch.randint(0, len(train), (jc.batch_size,), generator=gen)
        x = random_shift(to_input(images[idx], data.channels), gen)
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step(step + 1)
        if (step + 1) % jc.eval_every == 0 or step + 1 == jc.steps:
            acc = consider(model)
            bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{acc:.3f}")
    supervised = best["acc"]
    rounds = []
    if jc.self_training and data.unlabeled is not None:
        model.load_state_dict(best["state"])  # self-training starts from the best supervised judge
        rounds = self_train(cfg, data, model, optimiser, gen, consider)
    model.load_state_dict(best["state"])
    meta = {
        "model": jc.model, "in_chans": data.channels, "num_classes": data.num_classes, "image_size": data.image_size,
        "classes": data.classes, "val_accuracy": best["acc"], "train_images": len(train), "steps": jc.steps,
        "key": judge_key(cfg),
    }
    if rounds:
        meta["self_training"] = {"supervised_val_accuracy": supervised, "rounds": rounds,
                                 "pool_images": len(data.unlabeled)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(out_dir / WEIGHTS, model.state_dict())
    atomic_write_json(out_dir / META, meta)
    return meta


def judge_key(cfg: Config) -> str:
    return config_hash(cfg, "data", "judge", "seed")


def ensure_judge(cfg: Config, data: LabeledData) -> Path:
    """The run's judge directory, training the judge first when missing or stale (on
    rank 0 under ``accelerate launch``; the other processes wait for it)."""
    out, state = cfg.run_dir() / "judge", PartialState()
    if state.is_main_process:
        sweep_temp(out)
        meta_path = out / META
        fresh = (meta_path.is_file() and (out / WEIGHTS).is_file()
                 and json.loads(meta_path.read_text()).get("key") == judge_key(cfg))
        if not fresh:
            meta = train_judge(cfg, data, out)
            print(f"judge {meta['model']}: val accuracy {meta['val_accuracy']:.4f} on {len(data.splits['val'])} images")
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

"""The evaluation's FixMatch learner as the pool's labeler and the synthetic images'
teacher: DPT's loop (``pool.labeler: fixmatch``).

DPT (You et al., NeurIPS 2023) trains a semi-supervised learner on the labeled split and
the unlabeled pool, conditions the generator on that learner's confident pseudo-labels,
and then trains the learner again with the generated images added. Here the learner is
the evaluation's own "+ pool (FixMatch)" row (:mod:`genaug.evaluate.arms`), trained by
the same trainer (:func:`genaug.classify.trainer.train_once`) with seed ``seed``, converged
and selected on val, in the train stage before the generator: its weights go to
``runs/<run>/judge/fixmatch/`` and its predictions of the pool become
``pool_labels.jsonl``, which the generators and the pool rows read. With
``eval.synthetic_labels: teacher`` it is also the teacher (else the judge is).

Importing this module registers the ``fixmatch`` labeler with :mod:`genaug.pseudo`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genaug.config import Config
from genaug.data.base import LabeledData
from genaug.evaluate.arms import ARMS
from genaug.evaluate.classifier import load_classifier
from genaug.evaluate.data import EvalData, attach_unlabeled, load_eval_data
from genaug.classify.trainer import predict_proba, train_once
from genaug.io import atomic_write_json, stable_hash
from genaug.pseudo import Labeler, register_labeler
from genaug.runs import config_hash, reuse_cached

WEIGHTS, META = "model.safetensors", "learner.json"
# evaluation settings that choose rows, not how the FixMatch row trains
_ROWS_ONLY = ("mix", "seeds", "auto_candidates", "augment_candidates", "naive_augment", "synthetic_dir", "oracle",
              "oracle_dir", "replace_prob", "workers", "fixmatch", "synthetic_labels")


def learner_dir(cfg: Config) -> Path:
    return cfg.run_dir() / "judge" / "fixmatch"


def learner_config(cfg: Config) -> Config:
    """The evaluation's settings for the learner: its FixMatch row, with the weak view
    ``eval.augment`` — or, when that is ``auto`` (chosen on val in the eval stage, after
    the generator), ``shift``, FixMatch's weak augmentation for images that must not flip."""
    augment = "shift" if cfg.eval.augment == "auto" else cfg.eval.augment
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"augment": augment, "fixmatch": True})})


def learner_key(cfg: Config) -> str:
    ec = learner_config(cfg).eval.model_dump(mode="json")
    return stable_hash({"data": config_hash(cfg, "data"), "seed": cfg.seed, "v": 2,
                        "eval": {k: v for k, v in ec.items() if k not in _ROWS_ONLY}})


def _pool_eval_data(cfg: Config, data: LabeledData) -> EvalData:
    ed = load_eval_data(cfg, need_synthetic=False)
    attach_unlabeled(ed, data)
    return ed


def ensure_learner(cfg: Config, data: LabeledData) -> tuple[torch.nn.Module, object, dict]:
    """The FixMatch learner (model, input spec, meta), trained first when missing or stale
    and no run of ``paths.reuse_from`` holds one with its key."""
    out, key, lcfg = learner_dir(cfg), learner_key(cfg), learner_config(cfg)
    meta_path, rel = out / META, out.relative_to(cfg.run_dir())
    if not reuse_cached(cfg, f"{rel}/{META}", {"key": key}, also=[f"{rel}/{WEIGHTS}"]):
        ed = _pool_eval_data(lcfg, data)
        arm = ARMS["fixmatch"](lcfg, ed)
        print(f"FixMatch learner: {lcfg.eval.model} on {len(ed.train_x)} labeled + {len(ed.unlabeled_x)} pool images "
              f"(weak view {lcfg.eval.augment}, threshold {lcfg.eval.fixmatch_threshold:g}, mu {lcfg.eval.fixmatch_mu}), "
              f"seed {cfg.seed}, converged on val")
        out.mkdir(parents=True, exist_ok=True)
        row = train_once(lcfg, ed, 0.0, cfg.seed, save_to=out / WEIGHTS, save_meta={"key": key}, arm=arm)
        atomic_write_json(meta_path, {"key": key, "model": lcfg.eval.model, "augment": lcfg.eval.augment,
                                      "val_accuracy": row["val_acc"], "best_step": row["best_step"], "steps": row["steps"],
                                      "pool_confident_share": row.get("pool_confident_share"),
                                      "classes": len(data.classes), "channels": data.channels, "size": data.image_size})
        print(f"FixMatch learner: val accuracy {row['val_acc']:.4f} (best step {row['best_step']} of {row['steps']})")
    meta = json.loads(meta_path.read_text())
    loaded = load_classifier(lcfg.eval, out / WEIGHTS, key, num_classes=meta["classes"], channels=meta["channels"],
                             size=meta["size"])
    if loaded is None:
        raise AssertionError(f"{out / WEIGHTS} is not the learner of {meta_path}")  # written together above
    return (*loaded, meta)


def _fixmatch_probs(cfg: Config, data: LabeledData) -> tuple[np.ndarray, dict]:
    model, spec, meta = ensure_learner(cfg, data)
    x = torch.from_numpy(data.unlabeled.images).permute(0, 3, 1, 2).contiguous()
    probs = predict_proba(model, spec, x, torch.device("cpu")).numpy()
    return probs, {"labeler": "FixMatch learner", "model": meta["model"], "val_accuracy": meta["val_accuracy"]}


register_labeler("fixmatch", Labeler(learner_key, _fixmatch_probs))


def attach_teacher(cfg: Config, ed: EvalData) -> None:
    """The teacher's class probabilities of every synthetic image (``eval.synthetic_labels:
    teacher``): the FixMatch learner when it labels the pool, else the judge (trained on
    the labeled split, plus its self-training rounds on the pool)."""
    from genaug.data import load_data
    from genaug.judge import ensure_judge, judge_key, load_judge, predict

    data = load_data(cfg.data)
    if cfg.pool.labeler == "fixmatch" and data.unlabeled is not None:
        model, spec, meta = ensure_learner(cfg, data)
        probs = predict_proba(model, spec, ed.syn_x, torch.device("cpu")).float()
        who = {"model": "FixMatch learner", "classifier": meta["model"], "val_accuracy": meta["val_accuracy"],
               "key": learner_key(cfg)}
    else:
        model, meta = load_judge(ensure_judge(cfg, data))
        probs = torch.from_numpy(predict(model, ed.syn_x, meta["in_chans"])).float()
        who = {"model": "judge", "classifier": meta["model"], "val_accuracy": meta.get("val_accuracy"),
               "key": judge_key(cfg)}
    disagree = probs.argmax(1) != ed.syn_y
    ed.syn_teacher = probs
    ed.teacher = {**{k: v for k, v in who.items() if k != "key"}, "disagree": round(float(disagree.float().mean()), 4),
                  "disagree_per_class": [round(float(disagree[ed.syn_y == c].float().mean()), 4)
                                         if (ed.syn_y == c).any() else None for c in range(len(ed.classes))],
                  "ids_hash": stable_hash({"synthetic": ed.synthetic.get("ids_hash"), "teacher": who["key"]})}

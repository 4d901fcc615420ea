"""The rows of an evaluation ("arms"): how real images are drawn and augmented, and
what fills the extra slots at share r (SPEC §5).

* ``naive`` — real only, uniform draws, ``eval.naive_augment``: what a first try does.
* ``strong`` — real only, ``eval.real_sampling`` (class-balanced) + ``eval.augment``
  (RandAugment): **the baseline every gain is measured against**.
* ``synthetic`` — the strong baseline with a share r of kept synthetic images.
* ``oracle`` — the strong baseline with a share r of *held-out real* images, for every
  class as many as the synthetic set's fullest class: the ceiling a perfect generator
  (one that fills every class) could reach, and the evaluation's positive control.
* ``replace`` — DA-Fusion's protocol (``eval.replace_prob`` p): the strong baseline,
  each real image drawn replaced with probability p by one of its own synthetic variants.
* ``pool`` — with an unlabeled pool: the strong baseline with a share r of pool images
  labeled by the judge (confidence >= ``pool.threshold``): "is generating better than
  just labeling your unlabeled images?"
* ``pool_synthetic`` — the share r split evenly between those pool images and the
  synthetic ones: does the generator add anything on top of the labeled pool?
* ``fixmatch`` — with a pool: the strong baseline trained by FixMatch on the labeled
  split plus every pool image (its loss on the unlabeled stream is the only difference):
  the semi-supervised baseline a generator must beat.
* ``fixmatch_synthetic`` — the FixMatch learner with a share r of its labeled stream
  taken from the synthetic images (DPT's setting); its gain over ``fixmatch`` is the
  answer when a pool exists.
* ``teacher`` — with ``eval.synthetic_labels: teacher``: the + synthetic row with the
  teacher's soft predictions (the judge's, or the FixMatch learner's with
  ``pool.labeler: fixmatch``) as the synthetic images' labels (knowledge distillation).

An arm is registered with :func:`register_arm`; its builder returns ``None`` when the
arm does not apply (e.g. no held-out real images for an oracle).
"""

from __future__ import annotations

from typing import Callable

import torch

from genaug.classify.streams import Arm, EvalData
from genaug.config import Config
from genaug.errors import ConfigError


ArmFn = Callable[[Config, EvalData], "Arm | None"]
ARMS: dict[str, ArmFn] = {}


def register_arm(name: str) -> Callable[[ArmFn], ArmFn]:
    def deco(fn: ArmFn) -> ArmFn:
        ARMS[name] = fn
        return fn

    return deco


@register_arm("naive")
def _naive(cfg: Config, ed: EvalData) -> Arm:
    return Arm("naive", "naive real-only", f"Real images only, drawn uniformly, {cfg.eval.naive_augment} augmentation: "
               "what a first try does.", "uniform", cfg.eval.naive_augment)


@register_arm("strong")
def _strong(cfg: Config, ed: EvalData) -> Arm:
    return Arm("strong", "strong real-only", f"Real images only, {cfg.eval.real_sampling} draws, {cfg.eval.augment} "
               "augmentation: the baseline every gain is measured against.", cfg.eval.real_sampling, cfg.eval.augment)


@register_arm("synthetic")
def _synthetic(cfg: Config, ed: EvalData) -> Arm | None:
    if not len(ed.syn_x):
        return None
    what = f"the external set {ed.synthetic['dir']}" if ed.synthetic.get("external") else "kept synthetic images"
    return Arm("synthetic", "+ synthetic", f"The strong baseline with a share r of its examples taken from {what}.",
               cfg.eval.real_sampling, cfg.eval.augment, (ed.syn_x, ed.syn_y), ed.synthetic)


@register_arm("oracle")
def _oracle(cfg: Config, ed: EvalData) -> Arm | None:
    if ed.oracle is None:
        return None
    return Arm("oracle", "oracle (held-out real)", "The strong baseline with the synthetic slots filled by held-out "
               f"real images ({ed.oracle['source']}, for every class as many as the synthetic set's fullest class): "
               "the ceiling a generator that fills every class could reach.",
               cfg.eval.real_sampling, cfg.eval.augment, (ed.oracle_x, ed.oracle_y), ed.oracle)


@register_arm("replace")
def _replace(cfg: Config, ed: EvalData) -> Arm | None:
    p = cfg.eval.replace_prob
    if p is None or not len(ed.syn_x):
        return None
    index = {name: i for i, name in enumerate(ed.train_ids)}
    variants: list[list[int]] = [[] for _ in ed.train_ids]
    for j, source in enumerate(ed.syn_source):
        if source in index:
            variants[index[source]].append(j)
    if not any(variants):
        print("eval.replace_prob: no synthetic image names a training image as its source (only img2img variants "
              "do): no replace row")
        return None
    info = {"p": p, "ids_hash": f"replace:{p}:{ed.synthetic['ids_hash']}", "with_variants": sum(map(bool, variants))}
    return Arm("replace", f"+ synthetic (replace p={p:g})", f"DA-Fusion's protocol: the strong baseline, each real image "
               f"drawn replaced with probability {p:g} by one of its own synthetic variants (no extra slots).",
               cfg.eval.real_sampling, cfg.eval.augment, None, info,
               replace=(p, [torch.tensor(v, dtype=torch.long) for v in variants]))


@register_arm("pool")
def _pool(cfg: Config, ed: EvalData) -> Arm | None:
    if ed.pool is None:
        return None
    return Arm("pool", "+ pseudo-labeled pool", "The strong baseline with a share r of its examples taken from the "
               f"unlabeled pool's images whose pseudo-label (the judge's) has confidence >= {ed.pool['threshold']:g}, "
               "with that label: what labeling the pool gives without any generator.", cfg.eval.real_sampling,
               cfg.eval.augment, (ed.pool_x, ed.pool_y), ed.pool)


@register_arm("pool_synthetic")
def _pool_synthetic(cfg: Config, ed: EvalData) -> Arm | None:
    if ed.pool is None or not len(ed.syn_x):
        return None
    info = {"n": len(ed.pool_x) + len(ed.syn_x), "ids_hash": f"{ed.pool['ids_hash']}+{ed.synthetic['ids_hash']}",
            "pool": ed.pool["n"], "synthetic": len(ed.syn_x)}
    return Arm("pool_synthetic", "+ pool + synthetic", "The strong baseline with the share r split evenly between "
               "pseudo-labeled pool images and synthetic images: what the generator adds on top of the labeled pool.",
               cfg.eval.real_sampling, cfg.eval.augment,
               (torch.cat([ed.pool_x, ed.syn_x]), torch.cat([ed.pool_y, ed.syn_y])), info, extra_split=len(ed.pool_x))


@register_arm("fixmatch")
def _fixmatch(cfg: Config, ed: EvalData) -> Arm | None:
    ec = cfg.eval
    if ed.unlabeled_x is None or not len(ed.unlabeled_x) or not ec.fixmatch:
        return None
    info = {**ed.unlabeled, "threshold": ec.fixmatch_threshold, "mu": ec.fixmatch_mu, "weight": ec.fixmatch_weight}
    info["ids_hash"] = (f"fixmatch2:{ec.fixmatch_threshold}:{ec.fixmatch_mu}:{ec.fixmatch_weight}:"
                        f"{ed.unlabeled['ids_hash']}")
    return Arm("fixmatch", "+ pool (FixMatch)", f"The strong baseline trained on labeled + unlabeled pool images by "
               f"FixMatch: per labeled image {ec.fixmatch_mu} pool images, whose weak view ({ec.augment}) predicts a "
               f"pseudo-label that trains their strong view (RandAugment + Cutout) when its confidence is >= "
               f"{ec.fixmatch_threshold:g}: the semi-supervised learner any generator must beat when a pool exists.",
               ec.real_sampling, ec.augment, None, info, unlabeled=ed.unlabeled_x)


@register_arm("fixmatch_synthetic")
def _fixmatch_synthetic(cfg: Config, ed: EvalData) -> Arm | None:
    fixmatch, synthetic = _fixmatch(cfg, ed), _synthetic(cfg, ed)
    if fixmatch is None or synthetic is None:
        return None
    info = {**ed.synthetic, "ids_hash": f"{fixmatch.extra_info['ids_hash']}+{ed.synthetic['ids_hash']}"}
    return Arm("fixmatch_synthetic", "+ FixMatch + synthetic", "The FixMatch learner with a share r of its labeled "
               "examples taken from the synthetic images (DPT's use of them): does generating add anything once the "
               "unlabeled images are used well?", fixmatch.sampling, fixmatch.augment, synthetic.extra, info,
               unlabeled=ed.unlabeled_x)


@register_arm("teacher")
def _teacher(cfg: Config, ed: EvalData) -> Arm | None:
    if ed.syn_teacher is None or not len(ed.syn_x):
        return None
    if cfg.eval.mixup > 0 or cfg.eval.cutmix > 0:
        raise ConfigError("eval.synthetic_labels=teacher does not combine with eval.mixup / eval.cutmix (both rewrite "
                          "the labels); set one of them to its default")
    t = ed.teacher
    return Arm("teacher", "+ synthetic (teacher labels)", f"The + synthetic row with each synthetic image trained on "
               f"the {t['model']}'s soft prediction instead of its conditioning label (knowledge distillation); the "
               f"{t['model']} disagrees with the condition on {t['disagree']:.1%} of them.", cfg.eval.real_sampling,
               cfg.eval.augment, (ed.syn_x, ed.syn_y), {**ed.synthetic, **t}, targets=ed.syn_teacher)


def build_arms(cfg: Config, ed: EvalData) -> list[Arm]:
    """The arms that apply to this evaluation, in registry order."""
    return [arm for fn in ARMS.values() if (arm := fn(cfg, ed)) is not None]

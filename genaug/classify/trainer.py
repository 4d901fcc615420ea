"""The one classifier trainer (STYLE 9): every classifier genaug trains — each
evaluation row, the FixMatch learner, the judge and its self-training rounds — is a
call of :func:`fit` with a configuration (``cfg.eval``: model, optimiser, budget, loss)
and an :class:`~genaug.classify.streams.Arm` (which streams, their shares, their views).

Each step draws ``eval.batch_size`` examples; at step t the batch holds
``floor((t+1) r B) - floor(t r B)`` synthetic slots, so over the run a share r is
synthetic whatever B (less when some classes are not augmented: their slots get real
images, and the row records the share seen). How many steps a run takes is its
:class:`~genaug.classify.budget.Budget` (converged on val by default, or a fixed
``eval.steps``). Real indices, synthetic indices and augmentation come from three
generators seeded by the seed alone, so the runs of different rows with the same seed
share initialisation and real-data order: the comparison is paired.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from accelerate import PartialState
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from timm.utils import ModelEmaV3


from genaug.classify.budget import Budget, Plateau, row_budget
from genaug.classify.streams import Arm, EvalData
from genaug.classify.views import augment, fixmatch_views
from genaug.config import Config, EvalConfig
from genaug.evaluate.classifier import InputSpec, apply_strategy, create_classifier
from genaug.faults import fault_point
from genaug.io import atomic_save_tensors
from genaug.progress import progress


def synthetic_count(step: int, r: float, batch: int) -> int:
    return math.floor((step + 1) * r * batch + 1e-9) - math.floor(step * r * batch + 1e-9)


def _loss_and_mixup(ec: EvalConfig, num_classes: int):
    if ec.mixup > 0 or ec.cutmix > 0:
        mixup = Mixup(mixup_alpha=ec.mixup, cutmix_alpha=ec.cutmix, label_smoothing=ec.label_smoothing,
                      num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    if ec.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=ec.label_smoothing), None
    return torch.nn.CrossEntropyLoss(), None


@torch.no_grad()
def predict(model: torch.nn.Module, spec: InputSpec, x: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(spec(x[i : i + batch_size].to(device))).argmax(1).cpu()
                      for i in range(0, len(x), batch_size)])


@torch.no_grad()
def predict_proba(model: torch.nn.Module, spec: InputSpec, x: torch.Tensor, device, batch_size: int = 256) -> torch.Tensor:
    """Class probabilities (N, K) of uint8 images (N, C, H, W)."""
    model.eval()
    return torch.cat([torch.softmax(model(spec(x[i : i + batch_size].to(device))).float(), dim=1).cpu()
                      for i in range(0, len(x), batch_size)])


def _by_class(labels: torch.Tensor, k: int, split: int | None = None) -> list:
    """Indices of each class; with ``split``, per class a pair (indices below it, at or above it)."""
    index = [torch.nonzero(labels == c).flatten() for c in range(k)]
    return index if split is None else [(i[i < split], i[i >= split]) for i in index]


def _batch(ed: EvalData, step: int, r: float, b: int, gens: list[torch.Generator],
           pools: tuple[list, list[torch.Tensor]], balanced: bool = False,
           extra: torch.Tensor | None = None,
           replace: tuple[float, list[torch.Tensor]] | None = None,
           targets: tuple[torch.Tensor, float] | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Batch at ``step``: ``b - n`` real examples (uniform over images, or with
    ``balanced`` over classes first), then ``n`` extra slots, each for a uniformly
    drawn class (so extra data never unbalances the classes), filled from ``extra``
    (default: the kept synthetic images; ``pools[0]`` indexes it by class, or holds per
    class a tuple of index tensors, one per source, and each slot then picks one of the
    sources that have images of its class evenly). A class without extra images (not
    augmented) fills its slot with one of its real images. With ``replace`` (p, the
    synthetic variants of each real image), each real example is swapped with
    probability p for one of its own variants (DA-Fusion). With ``targets`` = (soft
    labels of the extra images (M, K), label smoothing), the labels are soft (B, K): an
    extra image's own row, a real image's class smoothed as the other rows' loss does.
    Returns (images, labels, extra images used)."""
    extra = ed.syn_x if extra is None else extra
    n_syn = synthetic_count(step, r, b) if len(extra) else 0
    syn_pool, real_pool = pools
    if balanced:  # a uniformly drawn class (of those with training images), then one of its images
        present = [pool for pool in real_pool if len(pool)]
        which = torch.randint(0, len(present), (b,), generator=gens[0])[: b - n_syn]
        u = torch.rand(b, generator=gens[0])[: b - n_syn]
        real = torch.tensor([int(present[c][min(int(v * len(present[c])), len(present[c]) - 1)])
                             for c, v in zip(which.tolist(), u.tolist())], dtype=torch.long)
    else:
        real = torch.randint(0, len(ed.train_x), (b,), generator=gens[0])[: b - n_syn]
    cls = torch.randint(0, len(ed.classes), (b,), generator=gens[1])[:n_syn]
    pick = torch.rand(b, generator=gens[1])[:n_syn]
    sources = isinstance(syn_pool[0], tuple)  # drawn only then, so one-source runs keep their draws
    which = torch.rand(b, generator=gens[1])[:n_syn].tolist() if sources else [0.0] * n_syn
    xs, ys, used = [ed.train_x[real]], [ed.train_y[real]], 0
    if replace is not None:
        xs[0], used = _replace_real(ed, real, replace, gens[1])
    for c, u, v in zip(cls.tolist(), pick.tolist(), which):
        options = syn_pool[c]
        if sources:
            present = [o for o in options if len(o)] or [options[0]]
            options = present[min(int(v * len(present)), len(present) - 1)]
        pool, source = (options, extra) if len(options) else (real_pool[c], ed.train_x)
        i = pool[min(int(u * len(pool)), len(pool) - 1)]
        xs.append(source[i : i + 1])
        ys.append(targets[0][i : i + 1] if targets is not None and source is extra else torch.tensor([c]))
        used += source is extra
    if targets is not None:
        k, eps = targets[0].shape[1], targets[1]
        soft = lambda y: y if y.is_floating_point() else F.one_hot(y, k).float() * (1 - eps) + eps / k
        return torch.cat(xs), torch.cat([soft(y) for y in ys]), used
    return torch.cat(xs), torch.cat(ys), used


def _replace_real(ed: EvalData, real: torch.Tensor, replace: tuple[float, list[torch.Tensor]],
                  g: torch.Generator) -> tuple[torch.Tensor, int]:
    """The real images ``ed.train_x[real]``, each replaced with probability p by a
    uniformly drawn variant of its own (when it has any); returns (images, replaced)."""
    p, variants = replace
    u, v = torch.rand(len(real), generator=g), torch.rand(len(real), generator=g)
    x, swapped = ed.train_x[real].clone(), 0
    for j, (i, a, w) in enumerate(zip(real.tolist(), u.tolist(), v.tolist())):
        own = variants[i]
        if a < p and len(own):
            x[j] = ed.syn_x[own[min(int(w * len(own)), len(own) - 1)]]
            swapped += 1
    return x, swapped


@dataclass
class _Trainer:
    """One classifier run's model, optimiser and precision settings."""

    model: torch.nn.Module
    spec: InputSpec
    opt: torch.optim.Optimizer
    sched: CosineLRScheduler
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    mixup: Mixup | None
    ema: ModelEmaV3 | None = None  # the weights that are validated, selected and tested when set
    ema_step: int = 1
    confident: list = field(default_factory=list)  # FixMatch: per step, the share of pool images above the threshold

    @property
    def selected(self) -> torch.nn.Module:
        """The model whose val accuracy picks the checkpoint (the EMA when there is one)."""
        return self.ema.module if self.ema is not None else self.model


def _trainer(ec: EvalConfig, ed: EvalData, budget: Budget, init: dict | None = None,
             spec: InputSpec | None = None) -> _Trainer:
    """A run is one process on one device: under ``accelerate launch`` the processes
    split the runs between them (see ``evaluate``), so the model is never wrapped in DDP.
    ``init``: weights to start from (else timm's initialisation); ``spec``: the input
    convention to train with (else the model's own, from timm's data config)."""
    device = PartialState().device
    model, own = create_classifier(ec, num_classes=len(ed.classes), channels=ed.channels, data_size=ed.size)
    model, spec = apply_strategy(model, ec), spec or own
    if init is not None:
        model.load_state_dict(init)
    model = model.to(device)
    if ec.channels_last:  # mkldnn / cuDNN pick NHWC kernels from the weights' layout (~25% faster on CPU)
        model = model.to(memory_format=torch.channels_last)
    opt = create_optimizer_v2(model, opt=ec.optimizer, lr=ec.lr, weight_decay=ec.weight_decay)
    # fixed budget: cosine over it; converged: the same warmup, then the plateau's lr (see _set_lr)
    sched = CosineLRScheduler(opt, t_initial=budget.cap if budget.schedule == "cosine" else 10**9, warmup_t=budget.warmup,
                              warmup_lr_init=ec.lr * 0.01, lr_min=ec.lr * 0.01)
    precision = ec.mixed_precision if ec.mixed_precision != "fp16" or device.type == "cuda" else "no"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    ema = ModelEmaV3(model, decay=ec.ema_decay, use_warmup=True) if ec.ema else None
    return _Trainer(model, spec, opt, sched, device, autocast, scaler, *_loss_and_mixup(ec, len(ed.classes)), ema)


def _train_step(t: _Trainer, x: torch.Tensor, y: torch.Tensor,
                unlabeled: tuple[torch.Tensor, torch.Tensor, float, float] | None = None) -> torch.Tensor:
    """One optimisation step on uint8 images ``(B, C, H, W)`` (already augmented). With
    ``unlabeled`` = (weak views, strong views, threshold, weight) of pool images, FixMatch:
    one forward pass over all three (as FixMatch's code does, so BatchNorm sees them
    together), the weak views' confident predictions train the strong views."""
    x, y = t.spec(x.to(t.device)), y.to(t.device)
    if t.mixup is not None and unlabeled is None:
        x, y = t.mixup(x, y)
    t.model.train()
    with t.autocast():
        if unlabeled is None:
            loss = _supervised_loss(t, t.model(x), y)
        else:
            loss = _fixmatch_loss(t, x, y, *unlabeled)
    t.opt.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()
    t.scaler.step(t.opt)
    t.scaler.update()
    if t.ema is not None:
        t.ema.update(t.model, step=t.ema_step)
        t.ema_step += 1
    return loss


def _fixmatch_loss(t: _Trainer, x: torch.Tensor, y: torch.Tensor, weak: torch.Tensor, strong: torch.Tensor,
                   threshold: float, weight: float) -> torch.Tensor:
    """Labeled loss + weight x mean over the pool images of the masked cross-entropy of the
    strong view against the weak view's hard pseudo-label (Sohn et al. 2020, eq. 4)."""
    weak, strong = t.spec(weak.to(t.device)), t.spec(strong.to(t.device))
    logits = t.model(torch.cat([x, weak, strong]))
    lx, lw, ls = logits.split([len(x), len(weak), len(strong)])
    conf, pseudo = torch.softmax(lw.detach().float(), dim=1).max(1)
    mask = (conf >= threshold).float()  # (mu B,)
    t.confident.append(mask.mean().detach())
    loss_u = (torch.nn.functional.cross_entropy(ls.float(), pseudo, reduction="none") * mask).mean()
    # The labeled loss is plain cross-entropy, as in the paper, never label-smoothed: smoothing
    # eps caps the model's confidence near 1 - eps + eps/K (0.91 for eps 0.1, K 10), below the
    # threshold, so few pool images would ever train (measured on Fashion-MNIST K=10: 16% of
    # pool draws confident with eps 0.1, 73% without; test accuracy 0.738 vs 0.789).
    loss_x = _SOFT(lx, y) if y.is_floating_point() and y.dim() == 2 else F.cross_entropy(lx, y)
    return loss_x + weight * loss_u


def _supervised_loss(t: _Trainer, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The run's loss on class labels, or cross-entropy against soft labels (B, K)."""
    return _SOFT(logits, y) if y.is_floating_point() and y.dim() == 2 and t.mixup is None else t.loss_fn(logits, y)


_SOFT = SoftTargetCrossEntropy()


def _set_lr(t: _Trainer, budget: Budget, step: int, plateau: Plateau) -> None:
    """The learning rate after ``step`` steps: timm's cosine over the cap (a fixed budget,
    or ``eval.schedule: cosine``); for the plateau schedule its warmup, then the base rate
    times the plateau's cuts. (timm's
    PlateauLRScheduler counts plateaus per call and cannot say when to stop, which the
    protocol needs, so the cuts are counted by :class:`Plateau`.)"""
    if budget.schedule == "cosine" or step < budget.warmup:
        t.sched.step(step)
        return
    for group in t.opt.param_groups:
        group["lr"] = t.sched.base_values[0] * plateau.lr_scale


def _val_accuracy(t: _Trainer, ed: EvalData) -> float:
    return float((predict(t.selected, t.spec, ed.val_x, t.device) == ed.val_y).float().mean())


def arm_images(arm: Arm, ed: EvalData) -> int:
    """Distinct images a row of ``arm`` trains on: the real split plus its extra set
    (or, for the replace protocol, the variants), plus its unlabeled stream (FixMatch
    learns from every pool image, so its cap grows with the pool)."""
    extra = len(arm.extra[0]) if arm.extra is not None else (len(ed.syn_x) if arm.replace else 0)
    return len(ed.train_x) + extra + (len(arm.unlabeled) if arm.unlabeled is not None else 0)


@dataclass
class Fitted:
    """A finished run: the model holding its selected (best-val) weights, those weights,
    its input spec and device, and the run's record (val accuracy, steps, best step...)."""

    model: torch.nn.Module
    state: dict
    spec: InputSpec
    device: torch.device
    row: dict


def fit(cfg: Config, ed: EvalData, r: float, seed: int, arm: Arm | None = None, *, init: dict | None = None,
        spec: InputSpec | None = None, desc: str | None = None, quiet: bool = False) -> Fitted:
    """Train ``arm`` (default: the strong baseline + synthetic) at share ``r`` with
    ``seed`` for its budget (:func:`~genaug.classify.budget.row_budget` of ``cfg.eval``),
    selecting the weights on val (the last weights when there is no val split); never
    reads the test split. Every classifier genaug
    trains is one call: an evaluation row, the FixMatch learner, the judge."""
    ec, t0 = cfg.eval, time.perf_counter()
    arm = arm or Arm("synthetic", "", "", ec.real_sampling, ec.augment, (ed.syn_x, ed.syn_y))
    extra_x, extra_y = arm.extra or (ed.syn_x[:0], ed.syn_y[:0])
    budget = row_budget(ec, arm_images(arm, ed), semi_supervised=arm.unlabeled is not None)
    torch.manual_seed(seed)
    gens = [torch.Generator().manual_seed(seed * 7919 + k) for k in range(4)]  # real, synthetic, augmentation, pool
    t, plateau = _trainer(ec, ed, budget, init, spec), Plateau(budget)
    best = {"val_acc": -1.0, "step": 0, "state": None}
    seen, synthetic_seen, step = 0, 0, 0
    pools = (_by_class(extra_y, len(ed.classes), arm.extra_split), _by_class(ed.train_y, len(ed.classes)))
    bar = progress(range(budget.cap), desc=desc or f"{arm.name} r={r:g} seed={seed}", unit="step", leave=False,
                   disable=quiet)
    for step in bar:
        _set_lr(t, budget, step, plateau)
        x, y, used = _batch(ed, step, r, ec.batch_size, gens, pools, balanced=arm.sampling == "balanced", extra=extra_x,
                            replace=arm.replace, targets=None if arm.targets is None else (arm.targets, ec.label_smoothing))
        seen, synthetic_seen = seen + len(y), synthetic_seen + used
        loss = _train_step(t, augment(x, arm.augment, gens[2]), y, _unlabeled_batch(ec, arm, gens[3]))
        fault_point("step")
        if (step + 1) % budget.eval_every and step + 1 != budget.cap:
            continue
        acc = _val_accuracy(t, ed) if len(ed.val_y) else None  # no val split (a judge's): the last weights are kept
        bar.set_postfix(loss=f"{loss.item():.3f}", val_acc="-" if acc is None else f"{acc:.3f}")
        verdict = "best" if acc is None else plateau.update(acc)
        if verdict == "best":
            best = {"val_acc": acc, "step": step + 1,
                    "state": {k: v.detach().clone() for k, v in t.selected.state_dict().items()}}
        elif verdict == "stop":
            break
    bar.close()
    t.selected.load_state_dict(best["state"])
    row = {"mix": r, "seed": seed, "val_acc": best["val_acc"], "best_step": best["step"], "steps": step + 1,
           "cap": budget.cap, "lr_cuts": plateau.cuts, "synthetic_share_seen": round(synthetic_seen / max(1, seen), 4)}
    if t.confident:
        row["pool_confident_share"] = round(float(torch.stack(t.confident).mean()), 4)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return Fitted(t.selected, best["state"], t.spec, t.device, row)


def train_once(cfg: Config, ed: EvalData, r: float, seed: int, save_to: Path | None = None,
               save_meta: dict[str, str] | None = None, arm: Arm | None = None, quiet: bool = False) -> dict:
    """One evaluation row's run (:func:`fit`), then its test metrics; returns the per-seed
    row (val and test metrics, steps used, best step, cap). With ``save_to``, the
    selected (best-val) weights are written there as safetensors (the report's Grad-CAM
    panels load them)."""
    run = fit(cfg, ed, r, seed, arm, quiet=quiet)
    if save_to is not None:
        atomic_save_tensors(save_to, run.state, metadata=save_meta)
    seconds = run.row.pop("seconds")
    return {**run.row, **test_metrics(run.model, run.spec, ed, run.device), "seconds": seconds}


def _unlabeled_batch(ec: EvalConfig, arm: Arm, g: torch.Generator) -> tuple | None:
    """FixMatch's pool batch for one step (mu x batch images, weak and strong views), or
    None for an arm without an unlabeled stream. Its own generator: the real, synthetic
    and augmentation draws stay those of the other rows (paired)."""
    if arm.unlabeled is None:
        return None
    u = arm.unlabeled[torch.randint(0, len(arm.unlabeled), (ec.fixmatch_mu * ec.batch_size,), generator=g)]
    return (*fixmatch_views(u, arm.augment, g), ec.fixmatch_threshold, ec.fixmatch_weight)


def test_metrics(model: torch.nn.Module, spec: InputSpec, ed: EvalData, device) -> dict:
    """Accuracy, macro-F1, per-class accuracy and the confusion matrix on the test
    split: the only place the test split is read, after training and selection."""
    images, labels = ed.test.images, ed.test.labels
    # a read-only array (one unpickled in a worker process) is copied: torch warns on it otherwise
    x = torch.from_numpy(images if images.flags.writeable else images.copy()).permute(0, 3, 1, 2)
    y = torch.from_numpy(labels if labels.flags.writeable else labels.copy())
    pred = predict(model, spec, x, device)
    k = len(ed.classes)
    # Counting by hand rather than adding scikit-learn for three lines of arithmetic.
    confusion = torch.bincount(y * k + pred, minlength=k * k).view(k, k)  # rows: true, columns: predicted
    tp = confusion.diag().float()
    support, predicted = confusion.sum(1).float(), confusion.sum(0).float()
    f1 = torch.where(support + predicted > 0, 2 * tp / (support + predicted).clamp(min=1), torch.zeros_like(tp))
    return {"test_acc": float(tp.sum() / max(1, len(y))), "test_f1": float(f1[support > 0].mean()),
            "per_class_acc": (tp / support.clamp(min=1)).tolist(), "confusion": confusion.tolist(), "n_test": len(y)}

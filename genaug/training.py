"""Pieces shared by the generator trainers: accelerate setup, resumable checkpoints,
the metrics JSONL, sample grids and per-step seeding.

Resumption is exact by construction: every random draw of step ``t`` (data batch,
noise, labels, augmentation) comes from a generator seeded with ``(seed, t, rank)``,
so a resumed run needs only the weights, optimiser, EMA and step from the checkpoint.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import ProjectConfiguration
from PIL import Image
from safetensors.torch import save_file
from torchvision.utils import make_grid
from genaug.progress import progress

from genaug.config import Config
from genaug.errors import GenaugError
from genaug.faults import fault_point
from genaug.io import (append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl, stable_hash,
                        load_tensors, sweep_temp)

_CKPT = re.compile(r"^step_(\d+)$")


SCHEDULE_KEYS = {"steps", "eval_every", "checkpoint_every", "log_every", "fid_samples", "best_cond_acc"}


def model_hash(cfg: Config, section: str) -> str:
    """Hash of what a resumed run must share with the original: data, seed and every
    setting of ``section`` except the schedule (steps and eval/log/checkpoint intervals)."""
    from genaug.runs import hash_dump

    dump = hash_dump(cfg)
    settings = {k: v for k, v in dump[section].items() if k not in SCHEDULE_KEYS}
    pool = {"pool": dump["pool"], "judge": dump["judge"]} if cfg.data.unlabeled else {}  # pseudo-labels come from the judge
    return stable_hash({"data": dump["data"], "seed": cfg.seed, section: settings, **pool})


def check_existing(cfg: Config, out: Path, resume: bool, section: str) -> None:
    """Refuse to overwrite a run, or to resume one with different model settings."""
    if not resume and (checkpoints(out / "checkpoints") or (out / "metrics.jsonl").exists()):
        raise GenaugError(f"{out} already has a training run: pass --resume to continue it, or use another --run")
    if resume and (out / "train_config.json").is_file():
        before = json.loads((out / "train_config.json").read_text()).get("model_hash")
        if before not in (None, model_hash(cfg, section)):
            raise GenaugError(f"cannot resume {out}: data, seed or {section} settings differ from the run's "
                              "train_config.json (only steps and eval/log/checkpoint intervals may change)")


@dataclass
class TrainState:
    """Counters saved as JSON with every checkpoint."""

    step: int = 0
    best_fid: float = float("inf")
    best_step: int = -1
    extra: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {"step": self.step, "best_fid": self.best_fid, "best_step": self.best_step, "extra": self.extra}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.best_fid, self.best_step = int(state["step"]), float(state["best_fid"]), int(state["best_step"])
        self.extra = dict(state.get("extra", {}))

    def take_if_better(self, fid: float, per_class: list[float | None], floor: float) -> bool:
        """Whether an evaluation (FID, per-class conditioning accuracy) replaces best/, and
        if so record it: the lowest FID among evaluations that draw every class with at
        least ``floor`` conditioning accuracy; until one does, the lowest FID. FID alone
        preferred a checkpoint drawing one rare digit at 0.73 over a later one drawing
        all at 1.0 with FID 2.0 instead of 1.9."""
        drawn = all(a is None or a >= floor for a in per_class)
        was = self.extra.get("best_draws_every_class", False)
        if (was and not drawn) or (drawn == was and fid >= self.best_fid):
            return False
        self.best_fid, self.best_step = fid, self.step
        self.extra["best_draws_every_class"] = drawn
        return True


def make_accelerator(out_dir: Path, mixed_precision: str) -> Accelerator:
    """Accelerator with TensorBoard logging when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401

        log_with = "tensorboard"
    except ImportError:
        log_with = None
    if mixed_precision != "no" and not torch.cuda.is_available() and mixed_precision == "fp16":
        mixed_precision = "no"  # fp16 autocast needs a GPU; bf16 works on CPU
    return Accelerator(mixed_precision=mixed_precision, log_with=log_with,
                       project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "tb")))


def step_generator(seed: int, step: int, rank: int, device: torch.device, stream: int = 0) -> torch.Generator:
    """A fresh generator for one training step, independent of what came before."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_973 + rank * 101 + stream) % (2**63 - 1))
    return g


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()]
    return sorted(found)


def save_checkpoint(accelerator: Accelerator, ckpt_dir: Path, step: int, *, extra: dict,
                    state: TrainState, keep: int = 2) -> Path:
    """accelerate ``save_state`` (models, optimisers) plus ``extra`` objects (anything
    with a tensor-only ``state_dict``/``load_state_dict``) as
    safetensors and ``state`` as JSON, into a temp dir renamed when complete; keeps
    the newest ``keep``. Our own objects are never pickled: accelerate would reload
    custom objects as full pickles, which can run code."""
    final = ckpt_dir / f"step_{step:07d}"
    tmp = ckpt_dir / f".tmp_step_{step:07d}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for name, module in extra.items():
                save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
                          str(tmp / f"{name}.safetensors"))
            atomic_write_text(tmp / "train_state.json", json.dumps(state.state_dict()))
            fault_point("checkpoint", path=tmp)
    except OSError:  # e.g. disk full: no half-written checkpoint stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for _, old in checkpoints(ckpt_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator: Accelerator, ckpt_dir: Path, *, extra: dict,
                  state: TrainState) -> int | None:
    """Load the newest complete checkpoint into the prepared objects, ``extra`` and
    ``state``; returns its step, or None when there is none."""
    found = checkpoints(ckpt_dir)
    if not found:
        return None
    step, path = found[-1]
    try:
        accelerator.load_state(str(path))  # torch.load with weights_only=True: code in a pickle is refused
        for name, module in extra.items():
            module.load_state_dict(load_tensors(path / f"{name}.safetensors", device=str(accelerator.device)))
        state.load_state_dict(json.loads((path / "train_state.json").read_text()))
    except (pickle.UnpicklingError, RuntimeError, ValueError, KeyError, OSError, GenaugError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise GenaugError(f"cannot resume from {path}: {first[:300]} (a checkpoint holding anything but tensors is "
                          "refused, never unpickled); delete that folder to resume from the one before") from None
    return step


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows written after the checkpoint we resume from (they will be redone)."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def log_metrics(accelerator: Accelerator, path: Path, row: dict) -> None:
    if accelerator.is_main_process:
        append_jsonl(path, row)
    accelerator.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}, step=row["step"])


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (B, C, H, W) -> uint8 (B, C, H, W)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """uint8 (B, C, H, W) -> one PNG, ``nrow`` images per row."""
    grid = make_grid(images.cpu(), nrow=nrow, padding=2, pad_value=128)  # (C, H, W) uint8
    arr = grid.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[:, :, 0] if images.shape[1] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


class NonFiniteLoss(GenaugError):
    """A loss became NaN or inf at (0-based) step ``step``."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class FiniteWatch:
    """Watches the losses named in ``names`` (row key -> what to call it) for NaN/inf
    without reading them on the host each step (on a GPU every such read is a sync that
    stalls the queue): each step folds into two device tensors, the first step at which
    each loss was non-finite and its value then; :meth:`check` reads them once."""

    def __init__(self, names: dict[str, str]):
        self.names = names
        self.first: torch.Tensor | None = None  # (len(names),) first non-finite step, -1 while finite
        self.value: torch.Tensor | None = None

    def add(self, step: int, row: dict) -> None:
        losses = torch.stack([row[k].detach().float() for k in self.names])
        if self.first is None:
            self.first = torch.full_like(losses, -1.0)
            self.value = torch.zeros_like(losses)
        new = (self.first < 0) & ~torch.isfinite(losses)
        self.first = torch.where(new, float(step), self.first)
        self.value = torch.where(new, losses, self.value)

    def check(self) -> None:
        """Raise NonFiniteLoss for the earliest non-finite loss added so far."""
        if self.first is None:
            return
        first = self.first.tolist()
        bad = [(step, i) for i, step in enumerate(first) if step >= 0]
        if bad:
            step, i = min(bad)
            raise NonFiniteLoss(f"{list(self.names.values())[i]} loss is {self.value[i].item()}", step=int(step))


def host_row(row: dict) -> dict:
    """A metrics row with its device tensors read back as floats, in one transfer."""
    keys = [k for k, v in row.items() if isinstance(v, torch.Tensor)]
    values = torch.stack([row[k].detach().float() for k in keys]).tolist() if keys else []
    return row | dict(zip(keys, values))


def due(step: int, total: int, *every: int) -> bool:
    """Whether ``step`` (counted from 1) is the last one or a multiple of any of ``every``."""
    return step == total or any(step % e == 0 for e in every)


def stopped_error(out: Path, step: int, exc: Exception) -> GenaugError:
    """The message for a run stopped by a non-finite loss, naming the last good checkpoint."""
    last = checkpoints(out / "checkpoints")
    where = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written yet"
    return GenaugError(f"training stopped at step {step}: {exc}; {where} (lower the learning rate, then --resume)")


def batch_indices(seed: int, step: int, n: int, per_proc: int, world: int, rank: int) -> torch.Tensor:
    """This rank's slice of step ``step``'s global batch (drawn with replacement from n)."""
    g = step_generator(seed, step, 0, torch.device("cpu"))
    return torch.randint(0, n, (per_proc * world,), generator=g)[rank * per_proc : (rank + 1) * per_proc]


POOL_FID_REFERENCE = 5000  # pool images (a seeded subset) the training-time pool FID compares with


@dataclass
class ClassIndex:
    """The labeled images grouped by class, for class-balanced draws: a class uniformly
    among those present, then an image uniformly within it."""

    order: torch.Tensor  # (N,) labeled indices sorted by class
    starts: torch.Tensor  # (K,) where each present class begins in ``order``
    counts: torch.Tensor  # (K,) its image count (every class here has at least one)

    @classmethod
    def of(cls, labels: torch.Tensor) -> ClassIndex:
        order = torch.argsort(labels, stable=True)
        present, counts = torch.unique(labels, return_counts=True)
        return cls(order, torch.cumsum(counts, 0) - counts, counts)

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        """n labeled indices (with replacement), every class equally likely."""
        c = torch.randint(0, len(self.counts), (n,), generator=g)
        within = (torch.rand(n, generator=g) * self.counts[c]).long().clamp(max=self.counts[c] - 1)
        return self.order[self.starts[c] + within]


@dataclass
class GeneratorSet:
    """What a generator trains on: the labeled training split, then the pool images it
    uses (DPT-style: confident pseudo-labels condition; the diffusion model takes the
    rest as the null class, the GAN leaves them out)."""

    images: torch.Tensor  # (N + M, C, H, W) uint8: labeled first, then pool
    labels: torch.Tensor  # (N + M,) class index; the null class for unconfident pool images
    weights: torch.Tensor | None  # (N + M,) per-image loss weights; None: no pool, all 1
    n_labeled: int
    pool_share: float  # share of each batch drawn from the pool (0 without one)
    pool_reference: torch.Tensor | None = None  # (<= POOL_FID_REFERENCE, C, H, W) uint8, for the pool FID
    by_class: ClassIndex | None = None  # set: labeled images are drawn class first (class-balanced batches)

    @property
    def n_pool(self) -> int:
        return len(self.labels) - self.n_labeled


def generator_set(cfg: Config, data, *, null: int | None, balance: str = "natural") -> GeneratorSet:
    """The labeled split plus, with ``data.unlabeled``, the pool with its pseudo-labels
    (:func:`genaug.pseudo.ensure_pool_labels`). ``null``: the label of unconfident pool
    images; None leaves them out. ``balance="balanced"``: the labeled share of every batch
    is drawn class first, so a class with 18 images is seen as often as one with 360
    (the pool share keeps its natural draws)."""
    gs = _generator_set(cfg, data, null=null)
    if balance == "balanced":
        gs.by_class = ClassIndex.of(gs.labels[: gs.n_labeled])
    return gs


def _generator_set(cfg: Config, data, *, null: int | None) -> GeneratorSet:
    import genaug.evaluate.learner  # noqa: F401  registers pool.labeler=fixmatch (DPT's loop)
    from genaug.pseudo import ensure_pool_labels

    train = data.splits["train"]
    images = torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8
    labels = torch.from_numpy(train.labels)
    pseudo = ensure_pool_labels(cfg, data)
    if pseudo is None:
        return GeneratorSet(images, labels, None, len(labels), 0.0)
    pc = cfg.pool
    keep = np.arange(len(pseudo.labels)) if null is not None else pseudo.confident(pc.threshold)
    cond = pseudo.conditioning(pc.threshold, -1 if null is None else null)[keep]
    pool_x = torch.from_numpy(data.unlabeled.images[keep]).permute(0, 3, 1, 2).contiguous()
    ref = np.random.default_rng([cfg.seed, 6]).permutation(len(data.unlabeled))[:POOL_FID_REFERENCE]
    reference = torch.from_numpy(data.unlabeled.images[np.sort(ref)]).permute(0, 3, 1, 2).contiguous()
    confident = int((pseudo.confidence >= pc.threshold).sum())
    rest = "the rest as the null class" if null is not None else "the rest left out"
    PartialState().print(f"pool: {len(pseudo.labels)} images, {confident} with pseudo-label confidence >= {pc.threshold:g} "
          f"(trained as that class), {rest}; {pc.share:g} of each batch from the pool")
    if not len(keep):
        PartialState().print("no pool image to train on: the labeled split only")
        return GeneratorSet(images, labels, None, len(labels), 0.0, reference)
    weights = torch.cat([torch.ones(len(labels)), torch.full((len(keep),), pc.weight)])
    return GeneratorSet(torch.cat([images, pool_x]), torch.cat([labels, torch.from_numpy(cond)]), weights,
                        len(labels), pc.share, reference)


def set_indices(gs: GeneratorSet, seed: int, step: int, per_proc: int, world: int, rank: int) -> torch.Tensor:
    """This rank's slice of step ``step``'s global batch from ``gs``: without a pool the
    draws of :func:`batch_indices`; with one, ``round(pool_share * B)`` of the B slots
    come from the pool (its own seeded stream) and the batch is shuffled. With
    ``gs.by_class`` the labeled slots are class-balanced draws."""
    if not gs.pool_share and gs.by_class is None:
        return batch_indices(seed, step, gs.n_labeled, per_proc, world, rank)
    b = per_proc * world
    if not gs.pool_share:
        g = step_generator(seed, step, 0, torch.device("cpu"))
        return gs.by_class.draw(b, g)[rank * per_proc : (rank + 1) * per_proc]
    n_pool = min(b - 1, max(1, round(gs.pool_share * b)))
    g = step_generator(seed, step, 0, torch.device("cpu"), stream=2)
    labeled = (gs.by_class.draw(b - n_pool, g) if gs.by_class is not None
               else torch.randint(0, gs.n_labeled, (b - n_pool,), generator=g))
    pool = gs.n_labeled + torch.randint(0, gs.n_pool, (n_pool,), generator=g)
    both = torch.cat([labeled, pool])[torch.randperm(b, generator=g)]
    return both[rank * per_proc : (rank + 1) * per_proc]


def eval_labels(n: int, train_labels, num_classes: int, min_per_class: int = 20) -> torch.Tensor:
    """Labels for the training-time FID samples: in the training split's class
    proportions (so a long-tailed split is compared with a long-tailed sample set), at
    least ``min_per_class`` each (the grid shows 10 per class; 20 give each class's
    conditioning accuracy a standard error of at most 0.11). Balanced data gives
    ``arange(n) % num_classes`` up to order."""
    counts = np.bincount(np.asarray(train_labels), minlength=num_classes).astype(float)
    spare = max(0, n - min_per_class * num_classes)
    share = spare * counts / counts.sum()
    extra = np.floor(share).astype(int)
    extra[np.argsort(-(share - extra), kind="stable")[: spare - extra.sum()]] += 1  # largest remainders
    per_class = extra + min(min_per_class, n // num_classes)
    return torch.cat([torch.full((int(k),), c) for c, k in enumerate(per_class)]).long()


def score_samples(cfg: Config, images: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, *, step: int, out: Path,
                  extractor: str = "judge", pool: torch.Tensor | None = None) -> tuple[dict, dict]:
    """Training-time evaluation shared by the generator trainers: a grid (10 per class,
    one row per class), FID/KID against the real training split (and, given ``pool``,
    FID against the unlabeled pool), and the judge's conditional accuracy. Returns
    (metrics row, torch-fidelity summary of the training-split comparison)."""
    from genaug.fidelity import fidelity
    from genaug.judge import conditioning
    from genaug.runs import config_hash

    judge_dir = cfg.run_dir() / "judge"
    classes = int(labels.max()) + 1
    grid_idx = torch.cat([torch.nonzero(labels == c).flatten()[:10] for c in range(classes)])
    save_grid(images[grid_idx], out / "grids" / f"step_{step:07d}.png", nrow=min(10, len(labels) // classes or 1))
    metrics = fidelity(images, real, extractor=extractor, judge_dir=judge_dir,
                       real_cache_name=f"{cfg.run}-train-{config_hash(cfg, 'data', 'judge', 'seed')}",
                       cache_root=out / "fid_cache")
    cond_acc, per_class = conditioning(images, labels, judge_dir)
    row = {"fid": metrics["fid"], "kid": metrics["kid_mean"], "kid_std": metrics["kid_std"],
           "cond_acc": cond_acc, "cond_acc_per_class": per_class, "fid_extractor": metrics["extractor"],
           "fid_n_fake": metrics["n_fake"], "fid_n_real": metrics["n_real"]}
    if pool is not None:
        vs_pool = fidelity(images, pool, extractor=extractor, judge_dir=judge_dir, cache_root=out / "fid_cache",
                           real_cache_name=f"{cfg.run}-pool-{config_hash(cfg, 'data', 'judge', 'seed')}")
        row |= {"fid_pool": vs_pool["fid"], "kid_pool": vs_pool["kid_mean"], "fid_pool_n_real": vs_pool["n_real"]}
    return row, metrics


def run_steps(accelerator: Accelerator, state: TrainState, *, total: int, desc: str, out: Path,
              step_fn: Callable[[int], tuple[dict, int]], after_fn: Callable[[dict, float, Any], None],
              watch: FiniteWatch, sync_at: Callable[[int], bool]) -> None:
    """The loop both trainers share: ``step_fn(step) -> (metrics row, images seen)``
    does one optimisation step and may leave the row's values on the device. At the
    steps where ``sync_at(step)`` (counted from 1) holds, and only there, the losses
    ``watch`` saw are checked, the row is read back to the host and
    ``after_fn(row, images/s, bar)`` logs, evaluates and checkpoints; so nothing is
    written after a non-finite loss, and the run stops naming the step where it first
    appeared and the last good checkpoint. Between those steps the host never waits for
    the device."""
    t0, seen = time.perf_counter(), 0
    # "with": the bar is closed (its line ended) before an error message is printed
    with progress(total=total, initial=state.step, desc=desc, unit="step", disable=not accelerator.is_main_process) as bar:
        while state.step < total:
            row, n = step_fn(state.step)
            watch.add(state.step, row)
            state.step += 1
            seen += n
            bar.update(1)
            if sync_at(state.step):
                try:
                    watch.check()
                except NonFiniteLoss as exc:
                    raise stopped_error(out, exc.step, exc) from None
                after_fn(host_row(row), seen / (time.perf_counter() - t0), bar)
            fault_point("step")


def start_run(cfg: Config, data, accelerator: Accelerator, out: Path, *, resume: bool, section: str) -> None:
    """Checks (on every rank), then on rank 0: run dir, config, splits, the judge and
    ``train_config.json`` (whose model hash a later ``--resume`` is checked against)."""
    from genaug.judge import ensure_judge
    from genaug.runs import config_hash, prepare_run_dir, save_splits

    check_existing(cfg, out, resume, section)
    if accelerator.is_main_process:
        if resume and (cleared := sweep_temp(out)):
            print(f"removed {cleared} temp file(s) left by an interrupted run")
        prepare_run_dir(cfg)
        save_splits(cfg, data)
    ensure_judge(cfg, data)  # every rank: it trains on rank 0 behind a barrier
    if accelerator.is_main_process:
        atomic_write_json(out / "train_config.json", {
            "config_hash": config_hash(cfg, "data", section, "seed"), "model_hash": model_hash(cfg, section),
            "config": cfg.model_dump(mode="json")})
    accelerator.wait_for_everyone()


def resume_run(accelerator: Accelerator, out: Path, *, extra: dict, state: TrainState) -> None:
    """Load the newest checkpoint (if any) and drop metric rows written after it."""
    step = resume_latest(accelerator, out / "checkpoints", extra=extra, state=state)
    if accelerator.is_main_process:
        # No checkpoint yet: the run starts over, so rows of the lost steps go too.
        truncate_metrics(out / "metrics.jsonl", step or 0)
        if step is not None:
            print(f"resumed from step {step}")

"""`genaug train-diffusion`: class-conditional diffusion training (SPEC §3).

Epsilon- or v-prediction MSE on diffusers' DDPM forward process; labels are dropped to
the null class with probability ``diffusion.cfg_dropout`` (classifier-free guidance);
AdamW with warm-up + cosine (diffusers' schedule); EMA via diffusers' ``EMAModel``.
``best/`` and ``last/`` are written with ``save_pretrained`` (config.json +
safetensors) plus ``genaug.json``; sampling for FID uses the configured fast sampler.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel

from genaug.config import Config
from genaug.data import LabeledData, load_data
from genaug.generators.diffusion import build_unet, noise_scheduler, sample
from genaug.io import atomic_write_json, replace_dir, staging_dir
from genaug.runs import config_hash
from genaug.training import (FiniteWatch, GeneratorSet, TrainState, due, eval_labels, generator_set, log_metrics,
                             make_accelerator, run_steps, save_checkpoint, score_samples, set_indices, step_generator,
                             start_run, resume_run)

EVAL_SEED = 2024


class EMAState:
    """Adapter giving diffusers' EMAModel a tensor-only state dict (saved as safetensors)."""

    def __init__(self, ema: EMAModel):
        self.ema = ema

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"shadow.{i:05d}": p for i, p in enumerate(self.ema.shadow_params)}
        return out | {"optimization_step": torch.tensor(self.ema.optimization_step)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for i, p in enumerate(self.ema.shadow_params):
            p.copy_(state[f"shadow.{i:05d}"])
        self.ema.optimization_step = int(state["optimization_step"])


@dataclass
class DiffusionParts:
    unet: torch.nn.Module
    ema: EMAModel
    opt: torch.optim.Optimizer
    lr_sched: object
    scheduler: object
    init_from: dict | None = None  # what diffusion.init_from started from, for genaug.json and the report
    cbdm_probs: torch.Tensor | None = None  # (K,) CBDM's draw of the adjustment class; None: no CBDM


def pretrained_start(cfg: Config, data: LabeledData) -> tuple[UNet2DModel, dict] | None:
    """The ``diffusion.init_from`` UNet fitted to the data (None when unset); loaded before
    anything trains, so a wrong source is one line at once."""
    if not cfg.diffusion.init_from:
        return None
    from genaug.generators.pretrained import init_unet

    return init_unet(cfg.diffusion.init_from, classes=data.classes, channels=data.channels, image_size=data.image_size)


def _init(cfg: Config, data: LabeledData, accelerator, start: tuple[UNet2DModel, dict] | None = None) -> DiffusionParts:
    dc = cfg.diffusion
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    unet, init = start or (build_unet(dc, num_classes=data.num_classes, channels=data.channels,
                                      image_size=data.image_size), None)
    opt = torch.optim.AdamW(unet.parameters(), lr=dc.lr, weight_decay=0.0)
    lr_sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=dc.warmup_steps, num_training_steps=dc.steps)
    ema = EMAModel(unet.parameters(), decay=dc.ema_decay, use_ema_warmup=True, power=3 / 4,
                   model_cls=UNet2DModel, model_config=unet.config)
    unet, opt, lr_sched = accelerator.prepare(unet, opt, lr_sched)
    ema.to(accelerator.device)
    probs = None
    if dc.long_tail == "cbdm":  # CBDM's code draws y' from the training split's class frequencies
        counts = torch.bincount(torch.from_numpy(data.splits["train"].labels), minlength=data.num_classes).float()
        probs = (counts / counts.sum()).to(accelerator.device)
    return DiffusionParts(unet, ema, opt, lr_sched, noise_scheduler(dc), init, probs)


def _train_step(parts: DiffusionParts, accelerator, x0: torch.Tensor, y: torch.Tensor, g, dc, null: int,
                w: torch.Tensor | None = None) -> dict:
    """One denoising step on x0 (B, C, H, W) in [-1, 1] with labels y (B,) and optional
    per-image loss weights w (B,) (pool images vs labeled ones)."""
    b = x0.shape[0]
    noise = torch.randn(x0.shape, device=x0.device, generator=g)
    t = torch.randint(0, parts.scheduler.config.num_train_timesteps, (b,), device=x0.device, generator=g)
    drop = torch.rand(b, device=x0.device, generator=g) < dc.cfg_dropout
    y = torch.where(drop, torch.full_like(y, null), y)
    noisy = parts.scheduler.add_noise(x0, noise, t)
    target = noise if dc.prediction_type == "epsilon" else parts.scheduler.get_velocity(x0, noise, t)
    pred = parts.unet(noisy, t, class_labels=y).sample
    if w is None:
        loss = F.mse_loss(pred.float(), target.float())
    else:  # the weighted mean of per-image MSEs
        per_image = F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)  # (B,)
        loss = (per_image * w).sum() / w.sum().clamp(min=1e-8)
    row = {}
    if parts.cbdm_probs is not None:
        row["cbdm"] = _cbdm_term(parts, noisy, t, y, pred, g, dc.cbdm_tau, null)
        loss = loss + row["cbdm"]
    parts.opt.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    parts.opt.step()
    parts.lr_sched.step()
    parts.ema.step(accelerator.unwrap_model(parts.unet).parameters())
    return {"loss": loss.detach(), "lr": parts.lr_sched.get_last_lr()[0], **{k: v.detach() for k, v in row.items()}}


def _cbdm_term(parts: DiffusionParts, noisy: torch.Tensor, t: torch.Tensor, y: torch.Tensor, pred: torch.Tensor, g,
               tau: float, null: int) -> torch.Tensor:
    """CBDM's distribution-adjustment regulariser (Qin et al., CVPR 2023, as in their
    code): the same noisy input conditioned on a class y' drawn from the class
    frequencies; pred is pulled towards sg(pred'), and pred' towards sg(pred) at a
    quarter of the weight, both weighted by tau * t / T. Images whose label was dropped
    to the null class (classifier-free guidance) take no part."""
    y_adj = torch.multinomial(parts.cbdm_probs, len(y), replacement=True, generator=g)  # (B,)
    pred_adj = parts.unet(noisy, t, class_labels=y_adj).sample
    weight = t.float() / parts.scheduler.config.num_train_timesteps * tau  # (B,)
    sq = (pred.float() - pred_adj.float().detach()).square() + 0.25 * (pred.float().detach() - pred_adj.float()).square()
    per_image = sq.flatten(1).mean(1) * weight * (y != null)  # (B,)
    return per_image.mean()


def ema_unet(parts: DiffusionParts, accelerator) -> UNet2DModel:
    """A copy of the UNet carrying the EMA weights."""
    unet = UNet2DModel.from_config(accelerator.unwrap_model(parts.unet).config).to(accelerator.device)
    parts.ema.copy_to(unet.parameters())
    return unet.eval()


def save_unet(unet: UNet2DModel, out_dir: Path, meta: dict) -> None:
    """``save_pretrained`` into a temp dir + genaug.json, then swap it in for ``out_dir``."""
    tmp = staging_dir(out_dir)
    try:
        unet.save_pretrained(str(tmp))
        atomic_write_json(tmp / "genaug.json", {"architecture": "diffusers-unet2d", **meta})
    except OSError:  # e.g. disk full: the old directory stays, the half-built one goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)


def _meta(cfg: Config, data: LabeledData, parts: DiffusionParts, state: TrainState, metrics: dict | None) -> dict:
    dc = cfg.diffusion
    return {"kind": "diffusion", "classes": data.classes, "null_class": data.num_classes, "step": state.step,
            "fidelity": metrics, "scheduler": dict(parts.scheduler.config),
            "sampling": {"sampler": dc.sampler, "steps": dc.sample_steps, "guidance_scale": dc.guidance_scale},
            "config_hash": config_hash(cfg, "data", "diffusion", "seed"), "config": cfg.model_dump(mode="json"),
            **({"init_from": parts.init_from} if parts.init_from else {})}


def _evaluate(cfg, data, parts, state, out: Path, real: torch.Tensor, unet, pool: torch.Tensor | None) -> dict:
    """Grid + FID/KID of the EMA UNet's samples against the real training split (and the
    pool's FID, with one); updates best/."""
    dc = cfg.diffusion
    labels = eval_labels(dc.fid_samples, data.splits["train"].labels, data.num_classes)
    images = sample(unet, dict(parts.scheduler.config), labels, [EVAL_SEED + i for i in range(len(labels))],
                    sampler=dc.sampler, steps=dc.sample_steps, guidance_scale=dc.guidance_scale)
    row, metrics = score_samples(cfg, images, labels, real, step=state.step, out=out, pool=pool)
    if state.take_if_better(metrics["fid"], row["cond_acc_per_class"], cfg.diffusion.best_cond_acc):
        save_unet(unet, out / "best", _meta(cfg, data, parts, state, metrics))
    return row


def train_diffusion(cfg: Config, *, resume: bool = False) -> Path:
    """Train the class-conditional UNet of ``cfg``; returns ``runs/<run>/diffusion``."""
    out = cfg.run_dir() / "diffusion"
    data = load_data(cfg.data)
    accelerator = make_accelerator(out, cfg.diffusion.mixed_precision)
    start = pretrained_start(cfg, data)
    start_run(cfg, data, accelerator, out, resume=resume, section="diffusion")
    parts = _init(cfg, data, accelerator, start)
    state = TrainState()
    extra = {"ema": EMAState(parts.ema)}
    if resume:
        resume_run(accelerator, out, extra=extra, state=state)
    accelerator.init_trackers("diffusion")
    _loop(cfg, data, generator_set(cfg, data, null=data.num_classes, balance=cfg.diffusion.class_balance), accelerator, parts, state, out, extra)
    accelerator.end_training()
    return out


def _loop(cfg: Config, data: LabeledData, gs: GeneratorSet, accelerator, parts: DiffusionParts, state: TrainState,
          out: Path, extra) -> None:
    dc = cfg.diffusion
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    per_proc = max(1, dc.batch_size // world)

    def step_fn(step: int) -> tuple[dict, int]:
        idx = set_indices(gs, cfg.seed, step, per_proc, world, rank)
        x0 = gs.images[idx].to(device).float().div(127.5).sub(1)
        w = None if gs.weights is None else gs.weights[idx].to(device)
        parts.unet.train()
        g = step_generator(cfg.seed, step, rank, device, stream=1)
        return _train_step(parts, accelerator, x0, gs.labels[idx].to(device), g, dc, data.num_classes, w), per_proc * world

    run_steps(accelerator, state, total=dc.steps, desc="train-diffusion", out=out, step_fn=step_fn,
              after_fn=lambda row, img_s, bar: _after_step(cfg, data, gs, accelerator, parts, state, out, extra, row,
                                                           img_s, bar),
              watch=FiniteWatch({"loss": "diffusion"}),
              sync_at=lambda step: due(step, dc.steps, dc.log_every, dc.eval_every, dc.checkpoint_every))


def _after_step(cfg, data, gs, accelerator, parts, state, out, extra, row, img_s, bar) -> None:
    dc, step = cfg.diffusion, state.step
    is_eval = due(step, dc.steps, dc.eval_every)
    if is_eval:
        if accelerator.is_main_process:
            unet = ema_unet(parts, accelerator)
            real = torch.from_numpy(data.splits["train"].images).permute(0, 3, 1, 2)
            row |= _evaluate(cfg, data, parts, state, out, real, unet, gs.pool_reference)
            save_unet(unet, out / "last", _meta(cfg, data, parts, state, None))
        accelerator.wait_for_everyone()
    if due(step, dc.steps, dc.log_every) or is_eval:
        row = {"step": step, **row, "img_per_s": round(img_s, 1)}
        log_metrics(accelerator, out / "metrics.jsonl", row)
        bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{img_s:.0f}", **({"fid": f"{row['fid']:.3g}"} if "fid" in row else {}))
    if due(step, dc.steps, dc.checkpoint_every):
        save_checkpoint(accelerator, out / "checkpoints", step, extra=extra, state=state)

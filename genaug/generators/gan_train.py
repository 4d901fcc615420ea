"""`genaug train-gan`: the conditional DCGAN training loop (SPEC §3).

Split into small pieces: :func:`train_gan` sets up, :func:`_d_step` / :func:`_g_step`
do one optimisation step each, :func:`_evaluate` writes the grid and FID/KID and
updates ``best/``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genaug.config import Config
from genaug.data import LabeledData, load_data
from genaug.generators import save_generator
from genaug.generators.dcgan import (Discriminator, Generator, aux_loss, d_loss, effective_number_weights, g_loss,
                                     gsr_penalty)
from genaug.generators.diffaugment import diff_augment, parse_policy
from genaug.runs import config_hash
from genaug.training import (FiniteWatch, GeneratorSet, TrainState, due, eval_labels, generator_set, log_metrics,
                             make_accelerator, run_steps, save_checkpoint, score_samples, set_indices, step_generator,
                             to_uint8, start_run, resume_run)

EVAL_SEED = 2024


@dataclass
class GanParts:
    G: torch.nn.Module
    D: torch.nn.Module
    ema: WarmupEMA
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    policy: tuple[str, ...]
    aux_weight: float
    gsr_weights: torch.Tensor | None = None  # (K,) gSR's per-class weights times gan.gsr_weight; None: no gSR


def build_models(cfg: Config, data: LabeledData) -> tuple[Generator, Discriminator]:
    gc = cfg.gan
    G = Generator(z_dim=gc.z_dim, num_classes=data.num_classes, channels=data.channels,
                  image_size=data.image_size, width=gc.g_channels)
    D = Discriminator(num_classes=data.num_classes, channels=data.channels, image_size=data.image_size, width=gc.d_channels)
    return G, D


def _d_step(parts: GanParts, accelerator, real: torch.Tensor, y: torch.Tensor, z: torch.Tensor, g, loss_kind: str) -> dict:
    """One discriminator update on real (B, C, H, W) in [-1, 1] and G(z, y)."""
    with torch.no_grad():
        fake = parts.G(z, y)
    both = diff_augment(torch.cat([real, fake]), parts.policy, g)
    logits, class_logits = parts.D(both, torch.cat([y, y]))
    real_logits, fake_logits = logits.float().chunk(2)
    loss = d_loss(loss_kind, real_logits, fake_logits)
    if parts.aux_weight:
        loss = loss + parts.aux_weight * aux_loss(class_logits[: len(y)], y)  # real images only
    parts.opt_d.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    parts.opt_d.step()
    return {"loss_d": loss.detach(), "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}


def _g_step(parts: GanParts, accelerator, y: torch.Tensor, z: torch.Tensor, g, loss_kind: str) -> dict:
    fake = parts.G(z, y)
    logits, class_logits = parts.D(diff_augment(fake, parts.policy, g), y)
    loss = g_loss(loss_kind, logits.float())
    if parts.aux_weight:
        loss = loss + parts.aux_weight * aux_loss(class_logits, y)
    row = {}
    if parts.gsr_weights is not None:
        row["gsr"] = gsr_penalty(accelerator.unwrap_model(parts.G), parts.gsr_weights)
        loss = loss + row["gsr"]
    parts.opt_g.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    parts.opt_g.step()
    parts.ema.update_parameters(accelerator.unwrap_model(parts.G))
    return {"loss_g": loss.detach(), **{k: v.detach() for k, v in row.items()}}


@torch.no_grad()
def generate(G: torch.nn.Module, labels: torch.Tensor, seeds: list[int], z_dim: int, batch_size: int = 500) -> torch.Tensor:
    """uint8 images (N, C, H, W), image i from ``torch.Generator().manual_seed(seeds[i])``:
    the same seed and label always give the same image, whatever the batch size."""
    G.eval()
    device = next(G.parameters()).device
    z = torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    out = [to_uint8(G(z[i : i + batch_size].to(device), labels[i : i + batch_size].to(device))).cpu()
           for i in range(0, len(labels), batch_size)]
    return torch.cat(out)


def _evaluate(cfg: Config, data: LabeledData, ema_G, state: TrainState, out: Path, real: torch.Tensor,
              pool: torch.Tensor | None = None) -> dict:
    """Grid + FID/KID of the EMA generator against the real training split (and the
    pool's FID, with one); updates best/."""
    labels = eval_labels(cfg.gan.fid_samples, data.splits["train"].labels, data.num_classes)
    images = generate(ema_G, labels, [EVAL_SEED + i for i in range(len(labels))], cfg.gan.z_dim)
    row, metrics = score_samples(cfg, images, labels, real, step=state.step, out=out, extractor=cfg.gan.fid_extractor,
                                 pool=pool)
    if state.take_if_better(metrics["fid"], row["cond_acc_per_class"], cfg.gan.best_cond_acc):
        save_generator(ema_G, out / "best", architecture="dcgan", meta=_meta(cfg, data, state, metrics))
    return row


def _meta(cfg: Config, data: LabeledData, state: TrainState, metrics: dict | None) -> dict:
    return {"kind": "gan", "classes": data.classes, "step": state.step, "fidelity": metrics,
            "config_hash": config_hash(cfg, "data", "gan", "seed"), "config": cfg.model_dump(mode="json")}


class WarmupEMA(torch.nn.Module):
    """Exponential moving average of a model's parameters and buffers whose decay ramps
    up as min(decay, (1 + n) / (10 + n)) after n updates, as diffusers' EMAModel does:
    with a fixed 0.999 the average would still be 60% initial random weights after 500
    steps. The average lives in ``.module``.

    Same state dict and arithmetic as torch's AveragedModel(use_buffers=True) with that
    decay as its ``avg_fn`` (so earlier checkpoints resume, and runs are bit for bit
    unchanged), but the update never reads a device value on the host: AveragedModel read
    ``n_averaged`` twice per update and the ``avg_fn`` once per tensor, 23 GPU syncs a
    step for genaug's DCGAN generator. Float tensors are updated with foreach kernels."""

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=next(model.parameters()).device))
        self.updates = 0  # the host's copy of n_averaged

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        self.updates = int(self.n_averaged)
        return result

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        pairs = list(zip([*self.module.parameters(), *self.module.buffers()],
                         [t.detach() for t in (*model.parameters(), *model.buffers())], strict=True))
        if self.updates == 0:
            for averaged, current in pairs:
                averaged.copy_(current)
        else:
            d = min(self.decay, (1 + self.updates) / (10 + self.updates))
            floats = [(a, c) for a, c in pairs if a.is_floating_point()]
            if floats:
                averaged, current = map(list, zip(*floats))
                torch._foreach_mul_(averaged, d)
                torch._foreach_add_(averaged, torch._foreach_mul(current, 1 - d))
            for a, c in pairs:  # integer buffers (BatchNorm's num_batches_tracked), as AveragedModel does
                if not a.is_floating_point():
                    a.copy_(a * d + c * (1 - d))
        self.updates += 1
        self.n_averaged.fill_(self.updates)


def _init(cfg: Config, data: LabeledData, accelerator) -> GanParts:
    gc = cfg.gan
    torch.manual_seed(cfg.seed)  # the initial weights depend on the seed alone, not on what ran before
    G, D = build_models(cfg, data)
    ema = WarmupEMA(G, gc.ema_decay)
    opt_g = torch.optim.Adam(G.parameters(), lr=gc.lr_g, betas=tuple(gc.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=gc.lr_d, betas=tuple(gc.betas))
    G, D, opt_g, opt_d = accelerator.prepare(G, D, opt_g, opt_d)
    ema.to(accelerator.device)
    gsr = None
    if gc.long_tail == "gsr":
        counts = np.bincount(data.splits["train"].labels, minlength=data.num_classes).tolist()
        gsr = gc.gsr_weight * effective_number_weights(counts, gc.gsr_beta).to(accelerator.device)
    return GanParts(G, D, ema, opt_g, opt_d, parse_policy(gc.diffaugment), gc.aux_weight, gsr)


def train_gan(cfg: Config, *, resume: bool = False) -> Path:
    """Train the conditional DCGAN of ``cfg``; returns ``runs/<run>/gan``."""
    out = cfg.run_dir() / "gan"
    data = load_data(cfg.data)
    accelerator = make_accelerator(out, cfg.gan.mixed_precision)
    start_run(cfg, data, accelerator, out, resume=resume, section="gan")
    parts = _init(cfg, data, accelerator)
    state = TrainState()
    if resume:
        resume_run(accelerator, out, extra={"ema": parts.ema}, state=state)
    accelerator.init_trackers("gan")
    _loop(cfg, data, generator_set(cfg, data, null=None, balance=cfg.gan.class_balance), accelerator, parts, state, out)
    accelerator.end_training()
    return out


def _loop(cfg: Config, data: LabeledData, gs: GeneratorSet, accelerator, parts: GanParts, state: TrainState,
          out: Path) -> None:
    """``gs``: the labeled split, plus confidently pseudo-labeled pool images with their
    pseudo-labels (the projection and auxiliary heads see them as that class)."""
    gc = cfg.gan
    world, rank, device = accelerator.num_processes, accelerator.process_index, accelerator.device
    per_proc = max(1, gc.batch_size // world)
    real_u8 = gs.images[: gs.n_labeled]  # FID reference: the real (labeled) training split

    def step_fn(step: int) -> tuple[dict, int]:
        idx = set_indices(gs, cfg.seed, step, per_proc, world, rank)
        real = gs.images[idx].to(device).float().div(127.5).sub(1)
        y = gs.labels[idx].to(device)
        g = step_generator(cfg.seed, step, rank, device, stream=1)
        parts.G.train()
        row = _d_step(parts, accelerator, real, y, torch.randn(per_proc, gc.z_dim, device=device, generator=g), g, gc.loss)
        row |= _g_step(parts, accelerator, y, torch.randn(per_proc, gc.z_dim, device=device, generator=g), g, gc.loss)
        return row, per_proc * world

    run_steps(accelerator, state, total=gc.steps, desc="train-gan", out=out, step_fn=step_fn,
              after_fn=lambda row, img_s, bar: _after_step(cfg, data, accelerator, parts, state, out, real_u8, row, img_s, bar,
                                                           gs.pool_reference),
              watch=FiniteWatch({"loss_d": "discriminator", "loss_g": "generator"}),
              sync_at=lambda step: due(step, gc.steps, gc.log_every, gc.eval_every, gc.checkpoint_every))


def _after_step(cfg, data, accelerator, parts, state, out, real_u8, row, img_s, bar, pool=None) -> None:
    gc, step = cfg.gan, state.step
    is_eval, is_log = due(step, gc.steps, gc.eval_every), due(step, gc.steps, gc.log_every)
    if is_eval:
        if accelerator.is_main_process:
            row |= _evaluate(cfg, data, parts.ema.module, state, out, real_u8, pool)
            save_generator(parts.ema.module, out / "last", architecture="dcgan", meta=_meta(cfg, data, state, None))
        accelerator.wait_for_everyone()
    if is_log or is_eval:
        row = {"step": step, **row, "img_per_s": round(img_s, 1)}
        log_metrics(accelerator, out / "metrics.jsonl", row)
        bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}", img_s=f"{img_s:.0f}",
                        **({"fid": f"{row['fid']:.3g}"} if "fid" in row else {}))
    if due(step, gc.steps, gc.checkpoint_every):
        save_checkpoint(accelerator, out / "checkpoints", step, extra={"ema": parts.ema}, state=state)

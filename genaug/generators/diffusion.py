"""Class-conditional diffusion (SPEC §3): diffusers' ``UNet2DModel`` with
``num_class_embeds = C + 1`` (index C is the null class for classifier-free guidance),
diffusers' noise schedulers, and genaug's own class-conditional sampling loop
(diffusers' pipelines do not pass class labels).

The model predicts, the scheduler owns the noise maths, :func:`sample` is just the loop.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel

from genaug.config import DiffusionConfig
from genaug.errors import ConfigError

SAMPLERS = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}


def build_unet(dc: DiffusionConfig, *, num_classes: int, channels: int, image_size: int) -> UNet2DModel:
    """A UNet sized by ``diffusion.block_channels``; attention only at the lowest resolution."""
    levels = len(dc.block_channels)
    if image_size % 2 ** (levels - 1):
        raise ConfigError(f"image size {image_size} is not divisible by 2^{levels - 1} "
                          f"(diffusion.block_channels has {levels} levels)")
    groups = math.gcd(*dc.block_channels, 32)
    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        block_out_channels=tuple(dc.block_channels), layers_per_block=dc.layers_per_block,
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        norm_num_groups=groups, attention_head_dim=min(dc.block_channels[-1], 32),
        num_class_embeds=num_classes + 1,
    )


def noise_scheduler(dc: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=dc.num_train_timesteps, prediction_type=dc.prediction_type,
                         beta_schedule="squaredcos_cap_v2")


def make_sampler(kind: str, train_config: dict):
    """A fresh sampling scheduler (DPM-Solver++ keeps history, so one per batch)."""
    if kind not in SAMPLERS:
        raise ConfigError(f"unknown sampler '{kind}' (choose {', '.join(SAMPLERS)})")
    extra = {"algorithm_type": "dpmsolver++"} if kind == "dpm++" else {}
    return SAMPLERS[kind].from_config(train_config, **extra)


@torch.no_grad()
def _sample_batch(unet: UNet2DModel, sched, x: torch.Tensor, y: torch.Tensor, null: int, scale: float) -> torch.Tensor:
    """x: initial noise (B, C, H, W); y: labels (B,). Returns x_0 in [-1, 1]."""
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        if scale == 1.0:  # conditional only
            eps = unet(sched.scale_model_input(x, t), t, class_labels=y).sample
        elif scale == 0.0:  # unconditional only
            eps = unet(sched.scale_model_input(x, t), t, class_labels=torch.full_like(y, null)).sample
        else:
            inp = sched.scale_model_input(torch.cat([x, x]), t)
            cond, uncond = unet(inp, t, class_labels=torch.cat([y, torch.full_like(y, null)])).sample.chunk(2)
            eps = uncond + scale * (cond - uncond)
        x = sched.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


@torch.no_grad()
def sample(unet: UNet2DModel, train_config: dict, labels: torch.Tensor, seeds: list[int], *, sampler: str = "dpm++",
           steps: int = 25, guidance_scale: float = 2.0, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (N, C, H, W); image i starts from noise drawn with
    ``torch.Generator().manual_seed(seeds[i])``, so the same seed, label and settings
    give the same image. ``guidance_scale`` w mixes eps = eps_null + w (eps_y - eps_null):
    0 = unconditional, 1 = conditional, > 1 = classifier-free guidance."""
    from genaug.training import to_uint8

    unet.eval()
    device, cfg = unet.device, unet.config
    null = cfg.num_class_embeds - 1
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    out = []
    for i in range(0, len(labels), batch_size):
        sched = make_sampler(sampler, train_config)
        sched.set_timesteps(steps)
        x0 = _sample_batch(unet, sched, noise[i : i + batch_size].to(device), labels[i : i + batch_size].to(device),
                           null, guidance_scale)
        out.append(to_uint8(x0).cpu())
    return torch.cat(out)

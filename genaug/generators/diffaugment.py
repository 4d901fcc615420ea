"""DiffAugment: differentiable augmentation of real *and* fake images before the
discriminator (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN
Training", NeurIPS 2020). It keeps D from memorising tiny training sets, which is
what lets a GAN learn from tens of images per class.

Written here rather than imported because the reference implementation is not on
PyPI; this version follows it (same policies and magnitudes) but draws every random
number from an explicit ``torch.Generator`` so training is reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        from genaug.errors import ConfigError

        raise ConfigError(f"unknown DiffAugment policy {unknown}: choose from {', '.join(POLICIES)}")
    return names


def _rand(x: torch.Tensor, generator: torch.Generator | None, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, dtype=x.dtype, generator=generator)


def color(x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
    """Random brightness, saturation (RGB only) and contrast; x in [-1, 1], (B, C, H, W)."""
    x = x + (_rand(x, g, 1, 1, 1) - 0.5)
    if x.shape[1] == 3:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (_rand(x, g, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, g, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device, generator=g)
    ty = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device, generator=g)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, g: torch.Generator | None, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of ``ratio`` x image size in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device, generator=g)
    oy = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device, generator=g)
    gb, gx, gy = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


_FNS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the policies in order; differentiable w.r.t. ``x``. Empty policy = identity."""
    for name in policy:
        x = _FNS[name](x, generator)
    return x

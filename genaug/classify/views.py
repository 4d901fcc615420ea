"""Augmentation views of uint8 images, shared by every classifier genaug trains (the
judge, self-training and the evaluation rows): the [-1, 1] input conversion, random
shifts, RandAugment-style ops and the classic augmentation kinds. Nothing here imports
another genaug module, so the trainers above it never import each other for it.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF


def to_input(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float in [-1, 1] with ``channels`` channels."""
    x = images.float().div(127.5).sub(1.0)
    if x.shape[1] == channels:
        return x
    if channels == 1:  # RGB -> luma (ITU-R 601-2, as PIL does)
        return (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x.expand(-1, channels, -1, -1)


def random_shift(x: torch.Tensor, generator: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` px (replicate-padded crop), one offset per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    # every h x w window of the padded image as a view, then one pick per image: 11x faster
    # on a CPU than a crop per image, which read its offsets from tensors 4 times
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (b, C, 2 pad + 1, 2 pad + 1, h, w)
    return windows[torch.arange(b), :, dy, dx]


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp (``theta`` (B, 2, 3) in normalised coordinates), nearest
    neighbour, black fill."""
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _rotate(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    a = torch.deg2rad(30.0 * m)
    zero = torch.zeros_like(a)
    return _affine(x, torch.stack([torch.stack([a.cos(), -a.sin(), zero], -1), torch.stack([a.sin(), a.cos(), zero], -1)], 1))


def _shear(x: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    theta = torch.eye(2, 3).repeat(len(x), 1, 1)
    theta[:, axis, 1 - axis] = 0.3 * m
    return _affine(x, theta)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: ``other + factor (x - other)``, per-image factor."""
    return other + factor.view(-1, 1, 1, 1) * (x.float() - other)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    gray = TF.rgb_to_grayscale(x) if x.shape[1] == 3 else x
    return _blend(x, gray.float().mean((1, 2, 3), keepdim=True), 1.0 + 0.9 * m)


def _sharpness(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's 3x3 SMOOTH filter, border pixels kept (torchvision's
    adjust_sharpness takes ~4 ms per 28 px image)."""
    c = x.shape[1]
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]).div(13).expand(c, 1, 3, 3)
    f = x.float()
    blur = f.clone()
    blur[..., 1:-1, 1:-1] = torch.nn.functional.conv2d(f, kernel, groups=c)
    return _blend(x, blur, 1.0 + 0.9 * m)


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    threshold = (255 - 256 * m.abs()).to(torch.int64).view(-1, 1, 1, 1)  # PIL: int(), so 178.2 -> 178
    return torch.where(x >= threshold, 255 - x, x)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    drop = (4 * m.abs()).round().to(torch.int64)  # low bits cleared: 8 - kept bits
    return x & (256 - 2 ** drop).to(torch.uint8).view(-1, 1, 1, 1)


# RandAugment-style ops (Cubuk et al. 2020; timm's "rand-m9-n2"): (name, op(images,
# per-image signed magnitude in [-1, 1])) on uint8 (b, C, H, W); geometric ops fill black.
_RAND_OPS: tuple[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], ...] = (
    ("identity", lambda x, m: x),
    ("autocontrast", lambda x, m: TF.autocontrast(x)),
    ("equalize", lambda x, m: TF.equalize(x)),
    ("rotate", _rotate),
    ("solarize", _solarize),
    ("posterize", _posterize),
    ("contrast", _contrast),
    ("brightness", lambda x, m: _blend(x, torch.zeros(1, 1, 1, 1), 1.0 + 0.9 * m)),
    ("sharpness", _sharpness),
    ("shear_x", lambda x, m: _shear(x, m, 0)),
    ("shear_y", lambda x, m: _shear(x, m, 1)),
)


def rand_augment(x: torch.Tensor, g: torch.Generator, n: int = 2, magnitude: float = 9 / 30) -> torch.Tensor:
    """``n`` uniformly drawn ops per image at ``magnitude`` (a share of each op's maximum,
    random sign) on uint8 ``(B, C, H, W)``. Draws ``2 n B`` numbers whatever the images;
    each op runs once per round on the images that drew it."""
    ops = torch.randint(0, len(_RAND_OPS), (len(x), n), generator=g)
    signs = torch.where(torch.rand(len(x), n, generator=g) < 0.5, -1.0, 1.0)
    for j in range(n):
        out = x.clone()
        for k, (_, op) in enumerate(_RAND_OPS):
            sel = torch.nonzero(ops[:, j] == k).flatten()
            if len(sel):
                # +0.5 and truncate (Tensor.round() took ~4 ms on such a tensor while another process held the cores)
                out[sel] = (op(x[sel], signs[sel, j] * magnitude) + 0.5).clamp(0, 255).to(torch.uint8)
        x = out
    return x


def augment(x: torch.Tensor, kind: str, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Classic augmentation on uint8 ``(B, C, H, W)``: random shifts (replicate-padded
    crops); ``shift_flip`` adds horizontal flips, ``randaugment`` adds flips and two
    RandAugment-style ops per image, ``randaugment_noflip`` the two ops without flips.
    For a given kind, draws the same count of random numbers for every batch of the
    same size (``randaugment`` and ``randaugment_noflip`` draw alike), so paired runs
    stay in step."""
    if kind == "none":
        return x
    out = random_shift(x.float(), g, pad)  # the judge's shift: same draws (dx, then dy)
    flip = torch.rand(len(x), generator=g) < 0.5
    if kind in ("shift_flip", "randaugment"):
        out = torch.where(flip.view(-1, 1, 1, 1), out.flip(-1), out)
    out = out.to(torch.uint8)  # whole numbers already (shifted and flipped uint8 pixels)
    return rand_augment(out, g) if kind.startswith("randaugment") else out


def cutout(x: torch.Tensor, g: torch.Generator, share: float = 0.5, fill: int = 127) -> torch.Tensor:
    """FixMatch's Cutout on uint8 ``(B, C, H, W)``: one grey square of side ``share x H``
    per image, centred at a uniformly drawn pixel (clipped at the border)."""
    b, _, h, w = x.shape
    side = max(1, int(share * h))
    cy, cx = torch.randint(0, h, (b,), generator=g), torch.randint(0, w, (b,), generator=g)
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    inside = ((rows - cy.view(b, 1, 1)).abs() <= side // 2) & ((cols - cx.view(b, 1, 1)).abs() <= side // 2)  # (B, H, W)
    return torch.where(inside.unsqueeze(1), torch.full_like(x, fill), x)


_WEAK_PART = {"none": "shift", "shift": "shift", "shift_flip": "shift_flip", "randaugment": "shift_flip",
              "randaugment_noflip": "shift"}


def fixmatch_views(x: torch.Tensor, kind: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's two views of unlabeled uint8 images: weak = the baseline augmentation
    ``kind``; strong = its shift (and flip) + two RandAugment ops + Cutout."""
    weak = augment(x, kind, g)
    strong = cutout(rand_augment(augment(x, _WEAK_PART[kind], g), g), g)
    return weak, strong


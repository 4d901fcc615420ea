"""Class-conditional DCGAN (SPEC §3).

Generator: z -> linear -> (B, C0, s0, s0) -> [4x4 stride-2 transposed conv, conditional BN, ReLU]
x k -> conv3x3 -> tanh. Class conditioning by conditional BatchNorm (per-class gain
and bias). Discriminator: spectrally normalised convs with stride-2 downsampling and a
projection head (Miyato & Koyama 2018): D(x, y) = w^T h + <embed(y), h>, where h is
the flattened last feature map (B, D*s0*s0). D also has an auxiliary classifier head
(AC-GAN) on h; ``gan.aux_weight`` scales its loss, 0 turns it off.

Image sizes are ``s0 * 2**k`` with 3 <= s0 <= 7 (16, 28, 32, 48, 56, 64, ...).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from genaug.errors import ConfigError


def factor_size(size: int) -> tuple[int, int]:
    """``size = s0 * 2**k`` with s0 in [3, 7] and k >= 1 -> (s0, k)."""
    s0, k = size, 0
    while s0 > 7 and s0 % 2 == 0:
        s0, k = s0 // 2, k + 1
    if not (3 <= s0 <= 7 and k >= 1):
        raise ConfigError(f"DCGAN image size {size} is not s0*2^k with 3<=s0<=7 (use e.g. 16, 28, 32, 64)")
    return s0, k


class ConditionalBatchNorm2d(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W), y: (B,)
        return self.bn(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        # A stride-2 4x4 transposed conv costs ~2x less than upsample + 3x3 conv,
        # which matters on a laptop CPU.
        self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
        self.norm = ConditionalBatchNorm2d(cout, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), y))  # (B, cin, s, s) -> (B, cout, 2s, 2s)


class Generator(nn.Module):
    """(z (B, z_dim), y (B,)) -> images (B, C, H, W) in [-1, 1]."""

    def __init__(self, *, z_dim: int, num_classes: int, channels: int, image_size: int, width: int):
        super().__init__()
        self.config = dict(z_dim=z_dim, num_classes=num_classes, channels=channels, image_size=image_size, width=width)
        self.s0, k = factor_size(image_size)
        widths = [width * min(8, 2 ** (k - i)) for i in range(k + 1)]  # e.g. 4w, 2w, w
        self.fc = nn.Linear(z_dim, widths[0] * self.s0 * self.s0)
        self.norm0 = ConditionalBatchNorm2d(widths[0], num_classes)
        self.blocks = nn.ModuleList(UpBlock(widths[i], widths[i + 1], num_classes) for i in range(k))
        self.out = nn.Conv2d(widths[-1], channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(z.shape[0], -1, self.s0, self.s0)
        x = F.relu(self.norm0(x, y))
        for block in self.blocks:
            x = block(x, y)
        return torch.tanh(self.out(x))


class Discriminator(nn.Module):
    """(images (B, C, H, W), y (B,)) -> logits (B,). Projection discriminator with SN."""

    def __init__(self, *, num_classes: int, channels: int, image_size: int, width: int):
        super().__init__()
        self.config = dict(num_classes=num_classes, channels=channels, image_size=image_size, width=width)
        _, k = factor_size(image_size)
        widths = [width * min(8, 2**i) for i in range(k + 1)]  # w, 2w, 4w
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(channels, widths[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for i in range(k):
            layers += [spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        s0, _ = factor_size(image_size)
        flat = widths[-1] * s0 * s0
        # Heads see the whole (D, s0, s0) map: pooling it (mean or sum) left D a patch
        # critic with a ~12 px receptive field, and G drew stroke fragments, not digits.
        self.linear = spectral_norm(nn.Linear(flat, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, flat))
        self.classifier = nn.Linear(flat, num_classes)  # auxiliary classifier head

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (realness logits (B,), class logits (B, num_classes))."""
        h = self.features(x).flatten(1)  # (B, D * s0 * s0)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1), self.classifier(h)


def near_square(n: int) -> tuple[int, int]:
    """n = a * b with a <= b and a as large as possible (gSR's grouping of a C-vector into
    an a x b matrix: 128 -> 8 x 16, 64 -> 8 x 8)."""
    a = max(i for i in range(1, int(n**0.5) + 1) if n % i == 0)
    return a, n // a


def effective_number_weights(counts: list[int], beta: float) -> torch.Tensor:
    """Per-class weights proportional to 1 / effective number of images
    (1 - beta^n) / (1 - beta) (Cui et al. 2019), scaled to sum to the number of classes,
    as gSR's code does; a class with no image gets the largest weight."""
    n = torch.tensor([max(1, c) for c in counts], dtype=torch.float64)
    inv = (1 - beta) / (1 - beta**n)
    return (len(counts) * inv / inv.sum()).float()


def gsr_penalty(G: nn.Module, class_weights: torch.Tensor) -> torch.Tensor:
    """Group spectral regularisation (Rangwani et al., ECCV 2022): in every conditional
    BatchNorm, each class's gain offset (gain - 1) and bias, C-vectors, are grouped into
    an a x b matrix whose largest singular value is penalised squared, weighted per class;
    the mean over layers and classes. Tail classes' conditioning collapses together with
    a 'spectral explosion' of these matrices, which the penalty prevents. The matrices are
    small (8 x 16 at most here), so the exact norm replaces the paper's power iteration."""
    terms = []
    for m in G.modules():
        if isinstance(m, ConditionalBatchNorm2d):
            a, b = near_square(m.gain.embedding_dim)
            for emb in (m.gain.weight - 1, m.bias.weight):  # (K, C)
                sigma = torch.linalg.matrix_norm(emb.float().view(-1, a, b), ord=2)  # (K,)
                terms.append((sigma.square() * class_weights.to(sigma.device)).mean())
    return torch.stack(terms).sum() / (len(terms) // 2)


def aux_loss(class_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Auxiliary-classifier term (AC-GAN): D learns to classify real images, G is
    rewarded when D recognises the class it was asked to draw. It speeds up class
    conditioning, which the projection term alone learned slowly on a CPU budget."""
    return F.cross_entropy(class_logits.float(), y)


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean() if kind == "hinge" else F.softplus(-fake_logits).mean()

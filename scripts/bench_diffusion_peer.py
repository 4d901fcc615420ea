"""Diffusion throughput: genaug vs the PyPI package denoising-diffusion-pytorch
(lucidrains), same data, same batch size, UNets of comparable size, one process.

Training: images/s of forward + backward + AdamW step (no EMA on either side) on
batches of real MNIST-5k training digits (28x28, 1 channel), class-conditional with
label dropout on both sides. Sampling: images/s for a batch of class-conditional
samples with a 25-step DDIM sampler and guidance scale 2 on both sides.

    pip install denoising-diffusion-pytorch
    python scripts/bench_diffusion_peer.py [--dim 16] [--batch-size 64] [--steps 10] [--write BENCHMARKS.md]

With --write, the table replaces the section between the bench_diffusion_peer markers.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genaug.config import DiffusionConfig
from genaug.data import load_data
from genaug.config import DataConfig
from genaug.generators.diffusion import build_unet, noise_scheduler, sample


def _timed(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def bench_genaug(x: torch.Tensor, y: torch.Tensor, dim: int, steps: int, n_sample: int) -> dict:
    dc = DiffusionConfig(block_channels=(dim, 2 * dim, 2 * dim), layers_per_block=2, sampler="ddim", sample_steps=25)
    unet = build_unet(dc, num_classes=10, channels=1, image_size=28)
    sched = noise_scheduler(dc)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    null = 10

    def step():
        noise = torch.randn_like(x)
        t = torch.randint(0, 1000, (len(x),))
        labels = torch.where(torch.rand(len(y)) < 0.1, torch.full_like(y, null), y)
        loss = F.mse_loss(unet(sched.add_noise(x, noise, t), t, class_labels=labels).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    unet.train()
    train_s = _timed(step, steps)
    labels = torch.arange(n_sample) % 10
    t0 = time.perf_counter()
    sample(unet, dict(sched.config), labels, list(range(n_sample)), sampler="ddim", steps=25, guidance_scale=2.0)
    return {"params": sum(p.numel() for p in unet.parameters()), "train_img_s": len(x) / train_s,
            "sample_img_s": n_sample / (time.perf_counter() - t0)}


def bench_lucidrains(x: torch.Tensor, y: torch.Tensor, dim: int, steps: int, n_sample: int) -> dict:
    from denoising_diffusion_pytorch.classifier_free_guidance import GaussianDiffusion, Unet

    model = Unet(dim=dim, num_classes=10, dim_mults=(1, 2, 2), channels=1, cond_drop_prob=0.1)
    diffusion = GaussianDiffusion(model, image_size=28, timesteps=1000, sampling_timesteps=25, ddim_sampling_eta=0.0)
    opt = torch.optim.AdamW(diffusion.parameters(), lr=1e-4)
    x01 = (x + 1) / 2  # lucidrains normalises [0, 1] inputs itself

    def step():
        loss = diffusion(x01, classes=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    diffusion.train()
    train_s = _timed(step, steps)
    diffusion.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        diffusion.sample(classes=torch.arange(n_sample) % 10, cond_scale=2.0, rescaled_phi=0.0)
    return {"params": sum(p.numel() for p in model.parameters()), "train_img_s": len(x) / train_s,
            "sample_img_s": n_sample / (time.perf_counter() - t0)}


def table(rows: dict, args, device: str) -> str:
    g, l = rows["genaug"], rows["denoising-diffusion-pytorch"]
    lines = [
        f"Device: {device}. Date: {datetime.date.today().isoformat()}. Runs: 1. Command: "
        f"`python scripts/bench_diffusion_peer.py --dim {args.dim} --batch-size {args.batch_size} --steps {args.steps}"
        f" --samples {args.samples}`",
        "",
        "| implementation | UNet params | train images/s | sample images/s (DDIM 25 steps, w=2) |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params'] / 1e6:.2f}M | {r['train_img_s']:.1f} | {r['sample_img_s']:.2f} |")
    lines.append(f"| ratio genaug / peer | | {g['train_img_s'] / l['train_img_s']:.2f}x | {g['sample_img_s'] / l['sample_img_s']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--write", default=None, help="markdown file whose bench_diffusion_peer section is replaced")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    train = load_data(DataConfig(source="mnist5k")).splits["train"]
    x = torch.from_numpy(train.images[: args.batch_size]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.from_numpy(train.labels[: args.batch_size])
    rows = {"genaug": bench_genaug(x, y, args.dim, args.steps, args.samples),
            "denoising-diffusion-pytorch": bench_lucidrains(x, y, args.dim, args.steps, args.samples)}
    device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})"
    text = table(rows, args, device)
    print(text)
    if args.write:
        path = Path(args.write)
        begin, end = "<!-- bench_diffusion_peer -->", "<!-- /bench_diffusion_peer -->"
        old = path.read_text() if path.exists() else ""
        block = f"{begin}\n{text}\n{end}"
        new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S) if begin in old else old + "\n" + block + "\n"
        path.write_text(new)
    return text


if __name__ == "__main__":
    main(sys.argv[1:])

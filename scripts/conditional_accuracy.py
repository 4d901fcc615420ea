"""Conditional accuracy of a trained generator, GAN or diffusion (issues #3 and #4).

Draws N images from the EMA generator (balanced over classes, per-image seeds that the
training-time evaluation never used) and asks a classifier trained only on the real
training split which class each one shows. By default that classifier is the run's
judge; ``--fresh`` trains an independent one with another seed, so the number does
not come from the same model that picked the best checkpoint.

    python scripts/conditional_accuracy.py --run default --n 1000 [--fresh]
    python scripts/conditional_accuracy.py --run mnist5k_diffusion --kind diffusion --n 1000 [--fresh]

Diffusion samples use the run config's sampler, steps and guidance scale unless
``--sampler/--steps/--guidance`` say otherwise; the result names them.
"""

from __future__ import annotations

import argparse
import time
import json
import sys
from pathlib import Path

import torch

from genaug.config import load_config
from genaug.data import load_data
from genaug.fidelity import fidelity
from genaug.judge import conditional_accuracy, train_judge
from genaug.synthetic.generators import open_generator

SEED_BASE = 1_000_000  # training-time FID uses seeds 2024..; these never overlap


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="default")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--fresh", action="store_true", help="train an independent classifier (seed + 1)")
    ap.add_argument("--kind", choices=["gan", "diffusion"], default="gan")
    ap.add_argument("--sampler", choices=["ddim", "dpm++"], default=None)
    ap.add_argument("--steps", type=int, default=None, help="diffusion sampling steps")
    ap.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    args = ap.parse_args(argv)
    run_dir = Path(args.runs_dir) / args.run
    overrides = [f"sample.generator={args.kind}", f"paths.runs_dir={args.runs_dir}"]
    for key, value in (("sampler", args.sampler), ("sample_steps", args.steps), ("guidance_scale", args.guidance)):
        if value is not None:
            overrides.append(f"diffusion.{key}={value}")
    cfg = load_config(run_dir / "config.yaml", overrides)
    data = load_data(cfg.data)
    judge_dir = run_dir / "judge"
    if args.fresh:
        judge_dir = run_dir / "judge_fresh"
        train_judge(cfg.model_copy(update={"seed": cfg.seed + 1}), data, judge_dir)
    gen = open_generator(cfg, args.checkpoint)
    labels = torch.arange(args.n) % len(gen.classes)
    t0 = time.perf_counter()
    images = gen.draw(labels, [SEED_BASE + i for i in range(args.n)])
    seconds = time.perf_counter() - t0
    real = torch.from_numpy(data.splits["train"].images).permute(0, 3, 1, 2)
    fid = fidelity(images, real, judge_dir=judge_dir)
    result = {"run": args.run, "checkpoint": args.checkpoint, "step": gen.step, "n": args.n, "sampler": gen.settings,
              "sampling_seconds": round(seconds, 1),
              "classifier": str(judge_dir), "conditional_accuracy": conditional_accuracy(images, labels, judge_dir),
              "fid_judge": fid["fid"], "kid_judge": fid["kid_mean"], "n_real": fid["n_real"]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

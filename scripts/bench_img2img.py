"""What the img2img generator kind costs: variants per second (issue #20).

    python scripts/bench_img2img.py [--model DIR|HUB_ID] [--images 32] [--steps 25] [--repeats 3]

Without ``--model`` it builds genaug's tiny offline pipeline
(``genaug.generators.img2img.build_tiny_pipeline``: random weights, toy sizes) in a
temporary folder, so the figure is the plumbing's cost (tokenizer, text encoder, VAE,
UNet steps, resizing), not a real Stable Diffusion's. Variants of MNIST-5k training
images are drawn through the same opener ``genaug sample`` uses, at each strength of
``img2img.strengths``; the median over the repeats is printed with the device.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__})"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="pipeline folder or hub id (default: the tiny offline pipeline)")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import torch

    from genaug.config import load_config
    from genaug.generators.img2img import build_tiny_pipeline, open_img2img
    from genaug.synthetic.store import image_seed

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(build_tiny_pipeline(Path(tmp) / "tiny"))
        cfg = load_config(None, ["sample.generator=img2img", f"img2img.model={model}", f"img2img.steps={args.steps}",
                                 f"img2img.batch_size={args.batch_size}"])
        gen = open_img2img(cfg)
        labels = torch.arange(args.images) % 10
        plans = [gen.plan(int(c), i) for i, c in enumerate(labels)]
        seeds = [image_seed(0, int(c), i) for i, c in enumerate(labels)]
        gen.images(labels[:2], seeds[:2], plans[:2])  # warm-up
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gen.images(labels, seeds, plans)
            rates.append(args.images / (time.perf_counter() - t0))
    what = "tiny offline pipeline (random weights)" if not args.model else args.model
    out = {"model": what, "images_per_s": round(statistics.median(rates), 2), "min": round(min(rates), 2),
           "max": round(max(rates), 2), "steps": args.steps, "strengths": list(cfg.img2img.strengths),
           "resolution": gen.settings["resolution"], "device": device_name(), "date": time.strftime("%Y-%m-%d"),
           "command": "python scripts/bench_img2img.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"img2img {what}: {out['images_per_s']} variants/s (median of {args.repeats}, range {out['min']}-{out['max']}), "
          f"{args.steps} steps at strengths {out['strengths']}, working size {out['resolution']} px, batch "
          f"{args.batch_size}; {out['device']}, {out['date']}")
    return out


if __name__ == "__main__":
    main()

"""Fashion-MNIST low-data GAN study: DiffAugment on vs off at K real images per class
(issue #3). Each generator is trained with `train_gan` on K images per class of the
official training split; its best EMA checkpoint is then scored against one common
*reference* classifier (trained on 600 real training images per class, never on test
images), so the four settings are compared in the same feature space:

* FID / KID: torch-fidelity, reference classifier's penultimate features,
  N generated images vs the 6,000 reference training images;
* conditional accuracy: share of N generated images the reference classifier assigns
  to their conditioning class.

    python scripts/gan_fashion_diffaugment.py --steps 1500 --per-class 10 50
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import torch

from genaug.config import load_config
from genaug.data import load_data
from genaug.fidelity import fidelity
from genaug.generators import load_generator
from genaug.generators.gan_train import generate, train_gan
from genaug.io import atomic_write_json
from genaug.judge import conditional_accuracy, ensure_judge

CONFIG = Path(__file__).parents[1] / "configs" / "fashion_mnist_gan.yaml"


def reference(runs_dir: str) -> tuple[Path, torch.Tensor]:
    cfg = load_config(CONFIG, ["run=fmnist_reference", "data.real_per_class=600", "judge.steps=800",
                               f"paths.runs_dir={runs_dir}"])
    data = load_data(cfg.data)
    judge_dir = ensure_judge(cfg, data)
    return judge_dir, torch.from_numpy(data.splits["train"].images).permute(0, 3, 1, 2)


def one_setting(k: int, aug: str, args, ref_dir: Path, ref_real: torch.Tensor) -> dict:
    run = f"fmnist_k{k}_{'diffaug' if aug else 'noaug'}"
    cfg = load_config(CONFIG, [f"run={run}", f"data.real_per_class={k}", f"gan.diffaugment='{aug}'",
                               f"gan.steps={args.steps}", f"gan.eval_every={max(1, args.steps // 4)}",
                               f"gan.checkpoint_every={max(1, args.steps // 4)}", f"gan.g_channels={args.width}",
                               f"gan.d_channels={args.width}", f"gan.batch_size={args.batch_size}",
                               f"paths.runs_dir={args.runs_dir}"])
    t0 = time.perf_counter()
    out = train_gan(cfg, resume=True)
    seconds = time.perf_counter() - t0
    G, meta = load_generator(out / "best")
    labels = torch.arange(args.n) % len(meta["classes"])
    images = generate(G, labels, [1_000_000 + i for i in range(args.n)], meta["args"]["z_dim"])
    fid = fidelity(images, ref_real, judge_dir=ref_dir, reference="train (600/class)")
    return {"real_per_class": k, "diffaugment": aug or "off", "best_step": meta["step"], "fid": fid["fid"],
            "kid": fid["kid_mean"], "kid_std": fid["kid_std"], "cond_acc": conditional_accuracy(images, labels, ref_dir),
            "n_fake": fid["n_fake"], "n_real": fid["n_real"], "train_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs-dir", default="runs")
    args = ap.parse_args(argv)
    ref_dir, ref_real = reference(args.runs_dir)
    rows = [one_setting(k, aug, args, ref_dir, ref_real) for k in args.per_class for aug in ("translation,cutout", "")]
    print("| K/class | DiffAugment | best step | FID (ref. clf) | KID | cond. acc |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['real_per_class']} | {r['diffaugment']} | {r['best_step']} | {r['fid']:.3f} | {r['kid']:.4f} | {r['cond_acc']:.3f} |")
    atomic_write_json(Path(args.runs_dir) / "fmnist_diffaugment.json", {
        "date": datetime.date.today().isoformat(), "device": f"CPU ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads)", "command": " ".join(["python", *sys.argv]), "runs": 1, "rows": rows})
    return rows


if __name__ == "__main__":
    main()

"""Offline ImageNet weights vs training from scratch (issue #6 acceptance).

Fine-tunes ``efficientnet_lite0`` on mnist5k with K real images per class, once from the
weights imported with ``genaug weights import efficientnet-lite0`` and once from a
random initialisation, same seeds, steps and data (real only, no synthetic images), and
prints test accuracy with 95% t-intervals and the paired difference.

    genaug weights import efficientnet-lite0
    python scripts/pretrained_vs_scratch.py --per-class 20 --seeds 3 --steps 300 --image-size 64
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from genaug.config import load_config
from genaug.evaluate.run import evaluate
from genaug.evaluate.stats import fmt, paired_gain
from genaug.weights import pretrained_overlay


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    if pretrained_overlay(args.model) is None:
        raise SystemExit(f"no imported weights for {args.model}: run 'genaug weights import efficientnet-lite0' first")
    common = [f"data.real_per_class={args.per_class}", f"eval.model={args.model}", "eval.mix=0",
              f"eval.seeds={args.seeds}", f"eval.steps={args.steps}", f"eval.image_size={args.image_size}",
              f"eval.lr={args.lr}", "eval.batch_size=32", "eval.eval_every=50"]
    results = {}
    for name, pretrained in (("pretrained", True), ("scratch", False)):
        t0 = time.time()
        cfg = load_config(None, [f"run=lite_{name}_k{args.per_class}", f"eval.pretrained={str(pretrained).lower()}", *common])
        metrics = evaluate(cfg)
        results[name] = {"metrics": metrics["settings"][0], "per_seed": {r["seed"]: r["test_acc"] for r in metrics["per_seed"]},
                         "seconds": round(time.time() - t0, 1)}
    gain = paired_gain(results["scratch"]["per_seed"], results["pretrained"]["per_seed"])
    print(f"{args.model}, mnist5k, {args.per_class} real images/class, {args.steps} steps x 32 at {args.image_size} px, "
          f"seeds {args.seeds}; device: {'cuda' if torch.cuda.is_available() else 'cpu'} ({platform.machine()})")
    for name in ("pretrained", "scratch"):
        m = results[name]["metrics"]
        print(f"{name:<11} test accuracy {fmt(m['test_acc'])}  macro-F1 {fmt(m['test_f1'])}  ({results[name]['seconds']} s)")
    print(f"pretrained - scratch (paired by seed): {fmt(gain, signed=True)}")
    summary = {name: {"test_acc": results[name]["metrics"]["test_acc"], "seconds": results[name]["seconds"]}
               for name in results} | {"paired_difference": gain, "args": vars(args)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

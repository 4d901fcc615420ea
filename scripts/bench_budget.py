"""How long should an evaluation row train? The measurements behind the converged protocol (issue 27).

    python scripts/bench_budget.py [--per-class 10] [--seeds 3] [--protocols plateau cosine fixed:300 fixed:3000]
                                   [--set eval.epochs=40] [--write BENCHMARKS.md]

One evaluation per protocol on Fashion-MNIST with K real images per class
(``configs/bench_fmnist.yaml``; 600 val images; official 10k test), r = 0.5, the same
paired seeds, the baseline augmentation fixed (RandAugment) so only the budget differs.
Each holds the strong baseline, the oracle (held-out real training images in the extra
slots, as many per class as the noise set: the positive control) and uniform noise
with the class labels as the "synthetic" set (the negative control). A good budget
shows the oracle's full gain, no gain from noise, and costs as few steps as it can.

* ``plateau``: the converged default (constant lr, cut 10x on a val plateau, then stop);
* ``cosine``: cosine over the row's cap, stop on the first val plateau;
* ``fixed:N``: exactly N steps, cosine (``eval.steps: N``; 300 was the old default).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def protocol_sets(protocol: str) -> list[str]:
    if protocol.startswith("fixed:"):
        return [f"eval.steps={int(protocol.split(':')[1])}"]
    return ["eval.steps=null", f"eval.schedule={protocol}"]


def run_protocol(args, protocol: str, noise: Path) -> dict:
    import bench_quality as bq

    run = f"budget_k{args.per_class}_{protocol.replace(':', '')}"
    sets = [f"data.real_per_class={args.per_class}", f"eval.seeds={args.seeds}", "eval.augment=randaugment",
            *protocol_sets(protocol)]
    qargs = argparse.Namespace(config=args.config, runs_dir=args.runs_dir, set=(args.set or []) + sets)
    t0 = time.perf_counter()
    bq.genaug(qargs, "eval-classifier", "--run", run, "--synthetic", str(noise), "--mix", "0.5",
              log=Path(args.runs_dir) / f"{run}.log")
    metrics = json.loads((Path(args.runs_dir) / run / "eval" / "metrics.json").read_text())
    return {"protocol": protocol, "seconds": time.perf_counter() - t0, "metrics": metrics}


def table(results: list[dict], args) -> str:
    from bench_quality import ci, device_name

    from genaug.evaluate.run import steps_text

    cmd = (f"python scripts/bench_budget.py --per-class {args.per_class} --seeds {args.seeds} --protocols "
           f"{' '.join(args.protocols)}" + "".join(f" --set {kv}" for kv in args.set or []))
    lines = [f"Device: {device_name()}. Date: {time.strftime('%Y-%m-%d')}. Command: `{cmd}`. Runs: {args.seeds} paired "
             "seeds per row; r = 0.5; RandAugment for every row but naive.", "",
             "| budget | strong real-only | oracle gain [95% CI] | noise-set gain [95% CI] | steps used / best: strong "
             "| oracle | noise | all rows' steps (sum) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        oracle, noise = m["oracle"]["settings"][0], m["settings"][1]
        total = sum(row["steps"] for row in m["per_seed"])
        lines.append(f"| {r['protocol']} | {ci(m['settings'][0]['test_acc'])} | {ci(oracle['gain_acc'], True)} | "
                     f"{ci(noise['gain_acc'], True)} | {steps_text(m['settings'][0])} | {steps_text(oracle)} | "
                     f"{steps_text(noise)} | {total:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    import bench_quality as bq
    from bench_speed import write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="the noise set's seed")
    ap.add_argument("--protocols", nargs="+", default=["plateau", "cosine", "fixed:300", "fixed:3000"])
    ap.add_argument("--config", default=bq.CONFIG)
    ap.add_argument("--set", action="append", help="extra section.key=value overrides for every run")
    ap.add_argument("--runs-dir", default="bench_runs/budget")
    ap.add_argument("--write", default=None, help="markdown file whose bench_budget section is replaced")
    args = ap.parse_args(argv)
    qargs = argparse.Namespace(config=args.config, runs_dir=args.runs_dir, set=args.set, seed=args.seed)
    noise = bq.noise_set(qargs, args.per_class, Path(args.runs_dir) / "noise_set" / f"k{args.per_class}")
    results = [run_protocol(args, p, noise) for p in args.protocols]
    text = table(results, args)
    print(text)
    if args.write:
        write_section(Path(args.write), text, "bench_budget")
    return text


if __name__ == "__main__":
    main()

"""The default pipeline from several base seeds: wall time and paired gain (issue #7).

Runs ``genaug pipeline`` (a fresh process each, ``--force``) for each base seed as run
``<prefix>_seed<N>``, then prints one row per seed: wall seconds, baseline and
augmented test accuracy, and the paired gain with its 95% interval.

    python scripts/pipeline_seeds.py --seeds 0 1 2 [--config configs/X.yaml] [--set k=v ...] [--control]

``--control`` then reruns each seed's evaluation with ``eval.real_sampling=balanced``
(real images drawn class-first: the resampling baseline) and adds its numbers, so a
gain on a long-tailed split can be split into rebalancing and what the generator adds.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path


def cpu_times() -> list[int]:
    """The aggregate 'cpu' line of /proc/stat (user nice system idle iowait irq softirq steal ...)."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of CPU time the hypervisor gave to other guests over the run (virtual machines)."""
    if len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before, after)]
    return round(delta[7] / max(1, sum(delta[:8])), 3)


def run_one(seed: int, args) -> dict:
    run = f"{args.prefix}_seed{seed}"
    cmd = [sys.executable, "-m", "genaug", "pipeline", "--force", "--run", run, "--set", f"seed={seed}"]
    if args.config:
        cmd += ["--config", args.config]
    for kv in args.set or []:
        cmd += ["--set", kv]
    t0, cpu0 = time.perf_counter(), cpu_times()
    log = Path(args.runs_dir) / f"{run}.pipeline.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    seconds, steal = time.perf_counter() - t0, steal_share(cpu0, cpu_times())
    if proc.returncode != 0:
        raise SystemExit(f"pipeline for seed {seed} failed (exit {proc.returncode}); see {log}")
    metrics = json.loads((Path(args.runs_dir) / run / "eval" / "metrics.json").read_text())
    base, aug = metrics["settings"][0], metrics["settings"][-1]
    row = {"seed": seed, "run": run, "seconds": round(seconds, 1), "cpu_steal": steal, "mix": aug["mix"],
           "baseline": base["test_acc"], "augmented": aug["test_acc"], "gain": aug["gain_acc"],
           "kept_synthetic": metrics["synthetic"]["n"], "real_train": metrics["real"]["train"]}
    if args.control:
        ctl = [c if c != "pipeline" else "eval-classifier" for c in cmd if c != "--force"]
        ctl += ["--set", "eval.real_sampling=balanced"]
        with open(log, "a") as f:
            if subprocess.run(ctl, stdout=f, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"control evaluation for seed {seed} failed; see {log}")
        m = json.loads((Path(args.runs_dir) / run / "eval" / "metrics.json").read_text())
        row["control"] = {"baseline": m["settings"][0]["test_acc"], "augmented": m["settings"][-1]["test_acc"],
                          "gain": m["settings"][-1]["gain_acc"]}
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", help="extra section.key=value overrides")
    ap.add_argument("--prefix", default="default")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--control", action="store_true", help="also evaluate with eval.real_sampling=balanced")
    args = ap.parse_args(argv)
    rows = [run_one(s, args) for s in args.seeds]
    print(f"device: cpu ({platform.machine()}, {__import__('os').cpu_count()} cores); date {time.strftime('%Y-%m-%d')}")
    print("| base seed | wall time | CPU steal | real train | kept synthetic | r | baseline acc [95% CI] "
          "| augmented acc [95% CI] | paired gain [95% CI] |")
    print("|---|---|---|---|---|---|---|---|---|")
    def ci(c, sign=""):
        return f"{c['mean']:{sign}.4f} [{c['lo']:{sign}.4f}, {c['hi']:{sign}.4f}]"

    for r in rows:
        steal = "n/a" if r["cpu_steal"] is None else f"{100 * r['cpu_steal']:.0f}%"
        print(f"| {r['seed']} | {r['seconds'] / 60:.1f} min | {steal} | {r['real_train']} | {r['kept_synthetic']} | {r['mix']:g} | "
              f"{ci(r['baseline'])} | {ci(r['augmented'])} | {ci(r['gain'], '+')} |")
    if args.control:
        print("\nSame runs, real images drawn class-first (eval.real_sampling=balanced, the resampling baseline):\n")
        print("| base seed | balanced real-only acc [95% CI] | balanced + synthetic acc [95% CI] | paired gain [95% CI] |")
        print("|---|---|---|---|")
        for r in rows:
            c = r["control"]
            print(f"| {r['seed']} | {ci(c['baseline'])} | {ci(c['augmented'])} | {ci(c['gain'], '+')} |")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()

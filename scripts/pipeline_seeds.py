"""The default pipeline from several base seeds: wall time, the rows and the gains (issues #7, #18).

Runs ``genaug pipeline`` (a fresh process each, ``--force``, output to a log file) for
each base seed as run ``<prefix>_seed<N>``, then prints one row per seed: wall time and
stage times, log size, naive / strong real-only / + synthetic test accuracy, the paired
gain over the strong baseline, what rebalancing + augmentation alone give (strong -
naive), the oracle's gain and the share of it captured.

    python scripts/pipeline_seeds.py --seeds 0 1 2 [--config configs/X.yaml] [--set k=v ...]
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
    stages = json.loads((Path(args.runs_dir) / run / "pipeline.json").read_text())
    base, aug = metrics["settings"][0], metrics["settings"][-1]
    oracle = next((o for o in (metrics.get("oracle") or {}).get("settings", []) if o["mix"] == aug["mix"]), None)
    return {"seed": seed, "run": run, "seconds": round(seconds, 1), "cpu_steal": steal, "mix": aug["mix"],
            "stages": {k: v["seconds"] for k, v in stages.items()}, "log_bytes": log.stat().st_size,
            "naive": metrics["baselines"]["naive"]["test_acc"], "baseline": base["test_acc"],
            "augmented": aug["test_acc"], "gain": aug["gain_acc"],
            "strong_over_naive": metrics["baselines"]["strong_over_naive"]["acc"],
            "oracle_gain": oracle["gain_acc"] if oracle else None,
            "captured": ((metrics.get("oracle") or {}).get("captured") or {}).get(str(aug["mix"])),
            "kept_synthetic": metrics["synthetic"]["n"], "real_train": metrics["real"]["train"], **pool_columns(metrics, aug["mix"])}


def pool_columns(metrics: dict, mix: float) -> dict:
    """With an unlabeled pool: the pseudo-labeled pool's gain over the strong baseline, pool +
    synthetic's, and what the synthetic images add on top of the pool (paired), at ``mix``."""
    pool = metrics.get("pool")
    if not pool:
        return {}
    at = lambda key: next((s["gain_acc"] for s in pool.get(key, []) if s["mix"] == mix), None)
    return {"pool_gain": at("settings"), "pool_synthetic_gain": at("pool_synthetic"),
            "synthetic_over_pool": (pool.get("synthetic_over_pool") or {}).get(str(mix)), "pool_n": pool["n"]}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--config", default=None)
    ap.add_argument("--set", action="append", help="extra section.key=value overrides")
    ap.add_argument("--prefix", default="default")
    ap.add_argument("--runs-dir", default="runs")
    args = ap.parse_args(argv)
    rows = [run_one(s, args) for s in args.seeds]
    print(f"device: cpu ({platform.machine()}, {__import__('os').cpu_count()} cores); date {time.strftime('%Y-%m-%d')}")
    print("| base seed | wall time (train / sample / eval / report s) | CPU steal | log | kept synthetic | r "
          "| naive acc | strong real-only acc [95% CI] | + synthetic acc [95% CI] | gain over strong [95% CI] "
          "| strong - naive [95% CI] | oracle gain [95% CI] | share captured |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ci(c, sign=""):
        return "—" if c is None else f"{c['mean']:{sign}.4f} [{c['lo']:{sign}.4f}, {c['hi']:{sign}.4f}]"

    for r in rows:
        steal = "n/a" if r["cpu_steal"] is None else f"{100 * r['cpu_steal']:.0f}%"
        st = " / ".join(f"{r['stages'].get(k, 0):.0f}" for k in ("train", "sample", "eval", "report"))
        share = r["captured"] or {}
        share = f"{share['share']:.2f}" if share.get("share") is not None else "n/a"
        print(f"| {r['seed']} | {r['seconds'] / 60:.1f} min ({st}) | {steal} | {r['log_bytes'] / 1024:.0f} KB "
              f"| {r['kept_synthetic']} | {r['mix']:g} | {r['naive']['mean']:.4f} | {ci(r['baseline'])} "
              f"| {ci(r['augmented'])} | {ci(r['gain'], '+')} | {ci(r['strong_over_naive'], '+')} "
              f"| {ci(r['oracle_gain'], '+')} | {share} |")
    if any("pool_gain" in r for r in rows):
        print("\n| base seed | pool images used | + pseudo-labeled pool gain [95% CI] | + pool + synthetic gain [95% CI] "
              "| synthetic on top of the pool [95% CI] |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['seed']} | {r.get('pool_n', '—')} | {ci(r.get('pool_gain'), '+')} | "
                  f"{ci(r.get('pool_synthetic_gain'), '+')} | {ci(r.get('synthetic_over_pool'), '+')} |")
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()

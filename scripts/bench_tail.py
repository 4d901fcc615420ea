"""Tail classes: can the generator draw every class of long-tailed data, and does it help there? (issue 28)

    python scripts/bench_tail.py [--data default fmnist_lt] [--variants gan:natural gan:balanced gan:gsr]
                                 [--eval-kinds gan] [--set key=value] [--table] [--write BENCHMARKS.md]

One ``genaug pipeline`` per (data, variant), each in its own run under --runs-dir:

* data ``default``: the built-in default run (MNIST-5k, imbalance 0.05: 360 training
  images of '0' down to 18 of '9'); ``fmnist_lt``: ``configs/bench_fmnist.yaml`` with
  500 images per class before an exponential profile down to 1% (500 of class 0 ... 5 of
  class 9), the rest of the training pool held out (the oracle's images);
* variant ``<kind>:<balance>``: the generator trained with ``class_balance`` natural or
  balanced; ``gan:gsr`` / ``diffusion:cbdm``: balanced plus the long-tail method.

Per run the table gives the unfiltered candidates' conditioning accuracy (the judge's
agreement with the requested class) per class and its minimum, the classes filled
with ``sample.per_class`` kept images, and, for kinds in --eval-kinds, the converged
evaluation: the synthetic set's gain over the strong baseline overall and on the five
rarest classes (mean per-class accuracy, paired by seed), with the oracle beside it.
Kinds left out of --eval-kinds stop after ``sample`` (a diffusion model's evaluation is
hours on a 2-core CPU). Each stage resumes from its files, so an interrupted benchmark is
rerun with the same command. Results merge into ``<runs-dir>/tail.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = {
    "default": {"config": None, "sets": []},
    "fmnist_lt": {"config": "configs/bench_fmnist.yaml",
                  "sets": ["data.real_per_class=500", "data.imbalance=0.01", "data.unlabeled=null", "sample.per_class=100",
                           "gan.aux_weight=1.0", "gan.steps=1600", "gan.eval_every=400", "gan.checkpoint_every=400",
                           "eval.mix=0.5", "eval.seeds=3"]},
}
# the diffusion runs, sized for a 2-core CPU like configs/mnist5k_diffusion.yaml, shorter
DIFFUSION_CPU = ["diffusion.block_channels=[16,32,32]", "diffusion.steps=1000", "diffusion.lr=0.001",
                 "diffusion.eval_every=500", "diffusion.checkpoint_every=500", "diffusion.fid_samples=300",
                 "diffusion.guidance_scale=3.0", "diffusion.sample_steps=10", "sample.per_class=100"]
METHOD = {"gsr": ("balanced", "gan.long_tail=gsr"), "cbdm": ("balanced", "diffusion.long_tail=cbdm")}


def variant_sets(variant: str) -> list[str]:
    kind, how = variant.split(":")
    balance, extra = METHOD.get(how, (how, None))
    sets = [f"sample.generator={kind}", f"{kind}.class_balance={balance}", *(DIFFUSION_CPU if kind == "diffusion" else [])]
    return sets + ([extra] if extra else [])


def run_name(data: str, variant: str) -> str:
    return f"tail_{data}_{variant.replace(':', '_')}"


def pipeline(args, data: str, variant: str, evaluate: bool) -> Path:
    """``genaug pipeline`` for an evaluated run, else ``train-<kind> --resume`` then ``sample``."""
    run, kind = run_name(data, variant), variant.split(":")[0]
    d = DATA[data]
    common = ["--run", run, *(["--config", d["config"]] if d["config"] else []),
              "--set", f"paths.runs_dir={args.runs_dir}", "--set", f"paths.gen_dir={args.runs_dir}/gen_dataset"]
    for kv in [*d["sets"], *variant_sets(variant), *(args.set or [])]:
        common += ["--set", kv]
    stages = [["pipeline"]] if evaluate else [[f"train-{kind}", "--resume"], ["sample"]]
    log = Path(args.runs_dir) / f"{run}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        cmd = [sys.executable, "-m", "genaug", *stage, *common]
        print(f"$ genaug {' '.join(stage)} --run {run} ({data}, {variant})", file=sys.stderr, flush=True)
        with open(log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"}).returncode:
                raise SystemExit(f"failed: {run}; see {log}")
    return Path(args.runs_dir) / run


def tail_gain(metrics: dict, arm: str, tail: list[int]) -> dict | None:
    """Paired t-interval over seeds of the arm's mean accuracy on the ``tail`` classes
    minus the strong baseline's."""
    from genaug.evaluate.stats import paired_gain

    def by_seed(name: str) -> dict[int, float]:
        return {r["seed"]: sum(r["per_class_acc"][c] for c in tail) / len(tail)
                for r in metrics["per_seed"] if r["arm"] == name}

    other = by_seed(arm)
    return paired_gain(by_seed("strong"), other) if other else None


def collect(args, data: str, variant: str, run_dir: Path, seconds: float) -> dict:
    gen = Path(args.runs_dir) / "gen_dataset" / run_dir.name
    fid = json.loads((gen / "fidelity.json").read_text())
    stamps = run_dir / "pipeline.json"  # an evaluated run's own stage times: a pause of the benchmark between stages is not in them
    if stamps.is_file():
        seconds = sum(s.get("seconds", 0) for s in json.loads(stamps.read_text()).values())
    out = {"data": data, "variant": variant, "run": run_dir.name, "seconds": round(seconds),
           "cond_acc": {n: e.get("cond_acc") for n, e in fid["classes"].items()},
           "kept": {n: e["kept"] for n, e in fid["classes"].items()}, "per_class_target": fid["thresholds"]["per_class"],
           "train_per_class": None, "eval": None}
    metrics_path = run_dir / "eval" / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        counts = m["real"]["train_per_class"]
        tail = sorted(range(len(counts)), key=lambda c: (counts[c], c))[:5]
        out["train_per_class"] = counts
        syn, oracle = m["settings"][1], (m.get("oracle") or {}).get("settings", [None])[0]
        out["eval"] = {"strong": m["settings"][0]["test_acc"], "gain": syn["gain_acc"],
                       "oracle": oracle["gain_acc"] if oracle else None, "tail_classes": [m["classes"][c] for c in tail],
                       "tail_gain": tail_gain(m, "synthetic", tail), "tail_oracle": tail_gain(m, "oracle", tail),
                       "seeds": len(m["seeds"]), "augment": (m.get("augment_choice") or {}).get("chosen")}
    return out


def command(args) -> str:
    return (f"python scripts/bench_tail.py --data {' '.join(args.data)} --variants {' '.join(args.variants)} "
            f"--eval-kinds {' '.join(args.eval_kinds)}" + "".join(f" --set {kv}" for kv in args.set or []))


def table(results: list[dict], args) -> str:
    """Every row tail.json holds, with the commands that produced them."""
    from bench_quality import ci, device_name

    commands = "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", command(args)) for r in results))
    lines = [f"Device: {device_name()}. Date: {time.strftime('%Y-%m-%d')}. Commands: {commands}. One generator per row "
             "(seed 0); evaluation rows: paired classifier seeds, converged protocol, r = 0.5.", "",
             "| data | generator | conditioning accuracy per class (unfiltered, class 0 ... 9) | min | classes filled "
             "| gain over strong [95% CI] | oracle gain | gain on the 5 rarest classes | oracle there | minutes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        acc = [a for a in r["cond_acc"].values()]
        filled = sum(k >= r["per_class_target"] for k in r["kept"].values())
        e = r["eval"] or {}
        cell = lambda key: ci(e[key], True) if e.get(key) else "—"
        lines.append(f"| {r['data']} | {r['variant']} | {' '.join('-' if a is None else f'{a:.2f}' for a in acc)} | "
                     f"{min((a for a in acc if a is not None), default=0):.2f} | {filled}/{len(acc)} | {cell('gain')} | "
                     f"{cell('oracle')} | {cell('tail_gain')} | {cell('tail_oracle')} | {r['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def merge(path: Path, new: list[dict]) -> list[dict]:
    old = json.loads(path.read_text()) if path.is_file() else []
    fresh = {(r["data"], r["variant"]) for r in new}
    return [r for r in old if (r["data"], r["variant"]) not in fresh] + new


def main(argv: list[str] | None = None) -> str:
    from bench_speed import write_section

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["default", "fmnist_lt"], choices=sorted(DATA))
    ap.add_argument("--variants", nargs="+", default=["gan:natural", "gan:balanced", "gan:gsr"])
    ap.add_argument("--eval-kinds", nargs="*", default=["gan"], help="generator kinds whose runs are evaluated too")
    ap.add_argument("--set", action="append", help="extra section.key=value overrides for every run")
    ap.add_argument("--runs-dir", default="bench_runs/tail")
    ap.add_argument("--write", default=None, help="markdown file whose bench_tail section is replaced")
    ap.add_argument("--table", action="store_true", help="run nothing: the table of what tail.json holds")
    args = ap.parse_args(argv)
    path, results = Path(args.runs_dir) / "tail.json", []
    for data in [] if args.table else args.data:
        for variant in args.variants:
            t0 = time.perf_counter()
            run_dir = pipeline(args, data, variant, evaluate=variant.split(":")[0] in args.eval_kinds)
            results.append(collect(args, data, variant, run_dir, time.perf_counter() - t0) | {"command": command(args)})
            path.write_text(json.dumps(merge(path, results), indent=1))
    text = table(merge(path, results), args)
    print(text)
    if args.write:
        write_section(Path(args.write), text, "bench_tail")
    return text


if __name__ == "__main__":
    main()

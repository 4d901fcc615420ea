"""Where the quality gate's threshold comes from (issue 30): the real-vs-synthetic probe's
test accuracy on sets whose answer is known, next to trained generators.

    python scripts/bench_quality_gate.py --run-dir runs/default [--set KEY=VALUE ...]
                                         [--probe-steps 150 300] [--store quality_gate.json]
                                         [--write BENCHMARKS.md]

For the run's data (its ``config.yaml``, with ``--set`` on top) the probe of
:mod:`genaug.quality` separates, with the run's quality settings:

* real vs real: two disjoint halves of the training split in the same class mix (the
  probe should be at chance, 0.5);
* real vs uniform noise (it should be at 1.0);
* real vs the run's generator ``best/`` (each kind found under the run directory), as
  the gate itself sees it (its ``quality.json``, computed when missing);
* with ``--probe-steps``, the same three pairs through probes of other lengths: a probe
  trained long enough separates every DCGAN, usable ones too, so the gate's probe is a
  short one (how its length was chosen).

Rows accumulate in ``--store`` (default ``<run-dir>/../quality_gate.json``) keyed by
the run directory, so several runs (the default data, user folders) make one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(run_dir: Path, sets: list[str], sweep: list[int]) -> dict:
    import numpy as np

    from genaug.config import load_config
    from genaug.data import load_data
    from genaug.quality import assess, gate_images, realism_probe
    from genaug.synthetic.generators import open_generator

    cfg = load_config(run_dir / "config.yaml", sets)
    data = load_data(cfg.data)
    train = data.splits["train"]
    n = min(cfg.quality.probe_images, len(train) // 2)
    order = np.random.default_rng([cfg.seed, 32]).permutation(len(train))
    halves = {"a": [], "b": []}
    for c in range(data.num_classes):  # each class split in two, so both halves share the class mix
        idx = [i for i in order if train.labels[i] == c]
        halves["a"] += idx[: len(idx) // 2]
        halves["b"] += idx[len(idx) // 2 : 2 * (len(idx) // 2)]
    a, b = train.images[np.array(halves["a"][:n])], train.images[np.array(halves["b"][:n])]
    noise = np.random.default_rng(0).integers(0, 256, size=a.shape, dtype=np.uint8)
    rows = {}
    for steps in sorted({cfg.quality.probe_steps, *sweep}):
        c = cfg.model_copy(update={"quality": cfg.quality.model_copy(update={"probe_steps": steps})})
        gate = steps == cfg.quality.probe_steps
        rows[f"real vs real (two halves of the training split), {steps} steps"] = realism_probe(c, a, b)
        rows[f"real vs uniform noise, {steps} steps"] = realism_probe(c, a, noise)
        for kind in ("gan", "diffusion"):
            best = run_dir / kind / "best"
            if not (best / "genaug.json").is_file():
                continue
            ck = c.model_copy(update={"sample": c.sample.model_copy(update={"generator": kind})})
            step = json.loads((best / "genaug.json").read_text())["step"]
            name = f"real vs {kind} best/ (step {step}), {steps} steps"
            if gate:  # the gate itself, as training ran it (with Inception FID/KID)
                q = assess(ck, best, data)
                rows[name + " (the gate)"] = {**q["probe"], "inception": q.get("inception")}
            else:  # the same draws, a probe of another length
                real, fake, _ = gate_images(ck, open_generator(ck, str(best)), data)
                rows[name] = realism_probe(ck, real.permute(0, 2, 3, 1).numpy(), fake.permute(0, 2, 3, 1).numpy())
    return {"run": str(run_dir), "source": cfg.data.source, "size": data.image_size, "channels": data.channels,
            "classes": data.num_classes, "train": len(train), "probe_max": cfg.quality.probe_max, "rows": rows,
            "date": time.strftime("%Y-%m-%d"), "device": f"{platform.machine()} CPU",
            "command": "python scripts/bench_quality_gate.py " + " ".join(sys.argv[1:])}


def table(results: dict) -> str:
    lines = ["### The quality gate's probe on known answers (issue 30)", "",
             "`scripts/bench_quality_gate.py`: the real-vs-synthetic probe of `genaug.quality` (the judge's model "
             "trained to tell real from synthetic on half of each side, best step on a quarter, accuracy on the last "
             "quarter, Wilson 95% interval). A generator is called not trained at probe accuracy >= the threshold "
             "(quality.probe_max 0.95) with the gate's probe length (quality.probe_steps, marked 'the gate').",
             "", "| data | pair | probe steps | probe test accuracy [95% CI] | test images | Inception FID / KID |",
             "|---|---|---|---|---|---|"]
    for r in results.values():
        what = f"{r['source']} ({r['size']} px, {r['channels']} ch, {r['classes']} classes, {r['train']} train)"
        for name, p in r["rows"].items():
            inc = p.get("inception") or {}
            fid = f"{inc['fid']:.3g} / {inc['kid']:.3g} ({inc['n_fake']} vs {inc['n_real']})" if "fid" in inc else ""
            lines.append(f"| {what} | {name} | {p['steps']} | {p['accuracy']:.3f} [{p['ci95'][0]:.3f}, {p['ci95'][1]:.3f}] | "
                         f"{p['n_test']} | {fid} |")
    cmds = sorted({f"`{r['command']}` ({r['device']}, {r['date']})" for r in results.values()})
    lines += ["", "Commands: " + "; ".join(cmds) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", type=Path, help="the run to measure (not needed with --table-only)")
    ap.add_argument("--table-only", action="store_true", help="rebuild the table from --store without measuring")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--write", default=None, help="markdown file whose bench_quality_gate section is replaced")
    ap.add_argument("--probe-steps", type=int, nargs="*", default=[], help="probe lengths to measure beside the "
                    "gate's quality.probe_steps (how the gate's length was chosen)")
    ap.add_argument("--store", type=Path, default=None, help="the JSON file rows accumulate in (default: "
                    "<run-dir>/../quality_gate.json); give several runs one store to make one table")
    args = ap.parse_args()
    if args.run_dir is None and not (args.table_only and args.store):
        ap.error("--run-dir is needed (or --table-only with --store)")
    store = args.store or args.run_dir.resolve().parent / "quality_gate.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    if not args.table_only:
        results[str(args.run_dir.resolve())] = measure(args.run_dir, args.set, args.probe_steps)
        store.write_text(json.dumps(results, indent=1))
    text = table(results)
    print(text)
    if args.write:
        from bench_speed import write_section

        write_section(Path(args.write), text, "bench_quality_gate")


if __name__ == "__main__":
    main()

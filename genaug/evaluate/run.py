"""``genaug eval-classifier``: baseline vs synthetic shares, over seeds, with paired gains.

Each finished (r, seed) run is appended to ``runs/<run>/eval/rows.jsonl`` with the
hash of everything it depends on, so an interrupted evaluation resumes and a rerun
with the same settings trains nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from accelerate import PartialState

from genaug.config import Config
from genaug.errors import ConfigError
from genaug.evaluate.data import EvalData, load_eval_data
from genaug.evaluate.stats import fmt, paired_gain, t_interval
from genaug.evaluate.train import train_once
from genaug.io import append_jsonl, atomic_write_json, read_jsonl, stable_hash, sweep_temp
from genaug.runs import config_hash


def parse_mix(text: str, candidates: tuple[float, ...]) -> tuple[list[float], bool]:
    """'0.3' -> [0, 0.3]; '0,0.1,0.5' -> [0, 0.1, 0.5]; 'auto' -> [0, *candidates]."""
    text = str(text).strip()
    if text == "auto":
        return sorted({0.0, *candidates}), True
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--mix expects a share in [0, 1], a comma list, or 'auto'; got {text!r}") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise ConfigError(f"--mix values must lie in [0, 1]; got {text!r}")
    return sorted({0.0, *values}), False


def _key(cfg: Config, ed: EvalData) -> str:
    dump = cfg.eval.model_dump(mode="json")
    for k in ("mix", "seeds", "auto_candidates"):
        dump.pop(k)
    return stable_hash({"eval": dump, "data": config_hash(cfg, "data"), "synthetic": ed.synthetic.get("ids_hash"),
                        "batching": 2})  # 2: class-balanced synthetic slots


def evaluate(cfg: Config) -> dict:
    """Run (or reuse) every (r, seed), then summarise into eval/metrics.json + plots.
    Under ``accelerate launch`` the processes split the pending runs (each run is
    deterministic, so the rows are those of one process) and rank 0 summarises."""
    state = PartialState()
    mixes, auto = parse_mix(cfg.eval.mix, cfg.eval.auto_candidates)
    ed = load_eval_data(cfg, need_synthetic=any(r > 0 for r in mixes))
    out = cfg.run_dir() / "eval"
    key, seeds = _key(cfg, ed), [cfg.seed + i for i in range(cfg.eval.seeds)]
    if state.is_main_process:
        sweep_temp(out)
    state.wait_for_everyone()
    done = {(r["mix"], r["seed"]): r for r in read_jsonl(out / "rows.jsonl") if r.get("key") == key}
    pending = [(r, s) for r in mixes for s in seeds if (r, s) not in done]
    for r, s in pending[state.process_index :: state.num_processes]:
        save = model_path(out, r, s) if s == seeds[0] else None  # first seed: weights for Grad-CAM
        append_jsonl(out / "rows.jsonl", {"key": key, **train_once(cfg, ed, r, s, save_to=save, save_meta={"key": key})})
    state.wait_for_everyone()
    metrics = _summarise_rows(cfg, ed, out, key, mixes, seeds, auto) if state.is_main_process else None
    state.wait_for_everyone()
    return metrics if metrics is not None else json.loads((out / "metrics.json").read_text())


def _summarise_rows(cfg: Config, ed: EvalData, out: Path, key: str, mixes: list[float], seeds: list[int],
                    auto: bool) -> dict:
    from genaug.evaluate.plots import write_plots

    done = {(r["mix"], r["seed"]): r for r in read_jsonl(out / "rows.jsonl") if r.get("key") == key}
    rows = {r: {s: done[(r, s)] for s in seeds} for r in mixes}
    metrics = summarise(cfg, ed, rows, auto=auto, key=key)
    atomic_write_json(out / "metrics.json", metrics)
    metrics["plots"] = write_plots(metrics, out)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _setting(r: float, by_seed: dict[int, dict], base: dict[int, dict]) -> dict:
    k = len(next(iter(by_seed.values()))["per_class_acc"])
    seeds = sorted(by_seed)
    out = {
        "mix": r,
        "test_acc": t_interval([by_seed[s]["test_acc"] for s in seeds]),
        "test_f1": t_interval([by_seed[s]["test_f1"] for s in seeds]),
        "val_acc": t_interval([by_seed[s]["val_acc"] for s in seeds]),
        "per_class_acc": [sum(by_seed[s]["per_class_acc"][c] for s in seeds) / len(seeds) for c in range(k)],
        "confusion": [[sum(by_seed[s]["confusion"][i][j] for s in seeds) for j in range(k)] for i in range(k)],
        "seconds_per_run": sum(by_seed[s]["seconds"] for s in seeds) / len(seeds),
        "synthetic_share_seen": sum(by_seed[s].get("synthetic_share_seen", 0.0) for s in seeds) / len(seeds),
    }
    if r > 0:
        out["gain_acc"] = paired_gain({s: base[s]["test_acc"] for s in seeds}, {s: by_seed[s]["test_acc"] for s in seeds})
        out["gain_f1"] = paired_gain({s: base[s]["test_f1"] for s in seeds}, {s: by_seed[s]["test_f1"] for s in seeds})
        out["per_class_gain"] = [out["per_class_acc"][c] - sum(base[s]["per_class_acc"][c] for s in seeds) / len(seeds)
                                 for c in range(k)]
    return out


def auto_choice(settings: list[dict]) -> dict:
    """The setting ``--mix auto`` picks: the best mean validation accuracy, ties to the
    smaller share. Chosen on validation only; the test split plays no part."""
    return max(settings, key=lambda s: (s["val_acc"]["mean"], -s["mix"]))


def summarise(cfg: Config, ed: EvalData, rows: dict[float, dict[int, dict]], *, auto: bool, key: str) -> dict:
    settings = [_setting(r, rows[r], rows[0.0]) for r in sorted(rows)]
    metrics = {
        "schema": 1, "run": cfg.run, "key": key, "classes": ed.classes,
        "model": cfg.eval.model, "strategy": cfg.eval.strategy, "pretrained": cfg.eval.pretrained or bool(cfg.eval.pretrained_file),
        "steps": cfg.eval.steps, "batch_size": cfg.eval.batch_size, "seeds": sorted(rows[0.0]),
        "real": {"train": len(ed.train_x), "val": len(ed.val_x), "test": next(iter(rows[0.0].values()))["n_test"],
                 "train_per_class": torch.bincount(ed.train_y, minlength=len(ed.classes)).tolist()},
        "real_sampling": cfg.eval.real_sampling,
        "synthetic": ed.synthetic, "baseline_mix": 0.0, "settings": settings,
        "per_seed": [row for r in sorted(rows) for row in rows[r].values()],
    }
    if auto:
        best = auto_choice(settings)
        metrics["auto"] = {"chosen_mix": best["mix"], "by": "mean val accuracy",
                           "val_acc_by_mix": {str(s["mix"]): s["val_acc"]["mean"] for s in settings}}
    return metrics


def rebalancing_caution(metrics: dict) -> str | None:
    """A warning when a gain may be class rebalancing rather than the generator's doing."""
    counts = [c for c in metrics["real"].get("train_per_class", []) if c]
    if not counts or max(counts) <= 1.5 * min(counts) or metrics.get("real_sampling", "uniform") != "uniform":
        return None
    return (f"Caution: the training split is imbalanced ({max(counts)} to {min(counts)} images per class) and synthetic "
            "slots are spread evenly over the classes, so part or all of a gain can come from rebalancing rather than "
            "from the generator. The resampling baseline separates the two: 'genaug eval-classifier --set "
            "eval.real_sampling=balanced' draws real images class-first (earlier rows are kept and reused).")


def results_table(metrics: dict) -> str:
    lines = [f"{metrics['model']} ({metrics['strategy']}), {metrics['steps']} steps x {metrics['batch_size']}, "
             f"seeds {metrics['seeds']}; real train {metrics['real']['train']}, synthetic kept {metrics['synthetic']['n']}; "
             f"test n={metrics['real']['test']}; mean [95% t-interval]",
             f"{'mix':>5}  {'seen syn.':>9}  {'test accuracy':<26} {'macro-F1':<26} {'paired gain (accuracy)':<28}"]
    chosen = (metrics.get("auto") or {}).get("chosen_mix")
    for s in metrics["settings"]:
        gain = fmt(s["gain_acc"], signed=True) if "gain_acc" in s else "(baseline)"
        mark = "  <- auto" if chosen == s["mix"] else ""
        lines.append(f"{s['mix']:>5g}  {s['synthetic_share_seen']:>9.3f}  {fmt(s['test_acc']):<26} {fmt(s['test_f1']):<26} {gain:<28}{mark}")
    caution = rebalancing_caution(metrics)
    if caution:
        lines.append(caution)
    return "\n".join(lines)


def model_path(out: Path, r: float, seed: int) -> Path:
    return out / "models" / f"r{r:g}_seed{seed}.safetensors"


def eval_dir(cfg: Config) -> Path:
    return cfg.run_dir() / "eval"

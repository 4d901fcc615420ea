"""``genaug eval-classifier``: baseline vs synthetic shares, over seeds, with paired gains.

Each finished (r, seed) run is appended to ``runs/<run>/eval/rows.jsonl`` with the
hash of everything it depends on, so an interrupted evaluation resumes and a rerun
with the same settings trains nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate import PartialState

from genaug.config import Config
from genaug.errors import ConfigError
from genaug.evaluate.arms import ARMS, Arm, build_arms
from genaug.classify.budget import row_budget
from genaug.evaluate.data import EvalData, load_eval_data
from genaug.evaluate.learner import attach_teacher  # also registers pool.labeler=fixmatch
from genaug.evaluate.stats import fmt, paired_gain, t_interval
from genaug.classify.trainer import arm_images, train_once
from genaug.evaluate.workers import Task, resolve_workers, run_in_workers
from genaug.io import append_jsonl, atomic_write_json, read_jsonl, stable_hash, sweep_temp
from genaug.runs import config_hash, lend, lending_runs, record_in_splits


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


# Settings that only pick an arm's draws / augmentation / extra set (hashed per arm
# instead), that say which rows to run rather than how one row trains, or how many
# processes train them.
_NOT_IN_KEY = ("mix", "seeds", "auto_candidates", "real_sampling", "augment", "augment_candidates", "naive_augment",
               "synthetic_dir", "oracle", "oracle_dir", "replace_prob", "workers", "fixmatch", "fixmatch_threshold",
               "fixmatch_mu", "fixmatch_weight", "synthetic_labels")  # these key the FixMatch / teacher arms alone


def arm_key(cfg: Config, arm: Arm) -> str:
    """What one arm's rows depend on: a real-only arm's rows do not change with the
    synthetic set, so they are reused across synthetic sets."""
    dump = {k: v for k, v in cfg.eval.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    extra = (arm.extra_info or {}).get("ids_hash")  # the extra slots' set, or (replace) the variants and p
    return stable_hash({"eval": dump, "data": config_hash(cfg, "data"), "sampling": arm.sampling,
                        "augment": arm.augment, "extra": extra, "batching": 3})  # 3: arms


def with_augment(cfg: Config, augment: str) -> Config:
    return cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"augment": augment})})


class Job(NamedTuple):
    """One (arm, r, seed) run to train unless rows.jsonl holds it."""

    arm: Arm
    key: str  # arm_key of the arm
    r: float
    seed: int
    save_to: Path | None  # where its best-val weights go, if anywhere


class _Runner:
    """Trains (arm, r, seed) runs that rows.jsonl does not hold yet, in this process or
    over worker processes, appending each row as it finishes."""

    def __init__(self, ed: EvalData, out: Path):
        self.ed, self.out, self.state = ed, out, PartialState()

    def done(self) -> dict:
        return {(r["key"], r["mix"], r["seed"]): r for r in read_jsonl(self.out / "rows.jsonl")}

    def run(self, cfg: Config, jobs: list[Job]) -> None:
        if cfg.paths.reuse_from:
            if self.state.is_main_process:
                borrow_rows(cfg, self.out, jobs, self.done())
            self.state.wait_for_everyone()
        done = self.done()
        pending = [j for j in jobs if (j.key, j.r, j.seed) not in done][self.state.process_index :: self.state.num_processes]
        arms = {j.key: j.arm for j in pending}  # by key: the augmentation candidates are all "strong"
        tasks = [Task(j.key, j.arm.name, j.r, j.seed, j.save_to, {"key": j.key}) for j in pending]
        steps = sum(row_budget(cfg.eval, arm_images(j.arm, self.ed)).cap for j in pending)
        workers = resolve_workers(cfg.eval.workers, runs=len(tasks), steps=steps, processes=self.state.num_processes)
        append = lambda t, row: append_jsonl(self.out / "rows.jsonl", {"key": t.key, "arm": t.arm, **row})
        if workers > 1:
            run_in_workers(cfg, self.ed, arms, tasks, workers, append)
            return
        for t in tasks:  # train_once looked up at call time: tests replace it
            append(t, train_once(cfg, self.ed, t.r, t.seed, save_to=t.save_to, save_meta=t.meta, arm=arms[t.key]))


def borrow_rows(cfg: Config, out: Path, jobs: list[Job], done: dict) -> int:
    """Copy into ``out/rows.jsonl`` the rows of ``jobs`` that it lacks and a run of
    ``paths.reuse_from`` holds under the same (key, share, seed), with the weights a job
    saves (a row whose weights the other run lacks is trained here instead), each marked
    with ``lent_by``, the run that trained it. A row's key holds all it depends on, down
    to the pixels of its extra images, so a borrowed row is the one this run would train
    (up to float summation order across thread counts). Returns how many it copied."""
    want = {(j.key, j.r, j.seed): j for j in jobs if (j.key, j.r, j.seed) not in done}
    lenders = []
    for src in lending_runs(cfg) if want else []:
        held = {(r["key"], r["mix"], r["seed"]): r for r in read_jsonl(src / "eval" / "rows.jsonl")}  # as _Runner.done
        for at in [at for at in want if at in held]:
            saved = str(want[at].save_to.relative_to(out)) if want[at].save_to else None
            if saved and not (src / "eval" / saved).is_file():
                continue  # the weights it must save are not there: trained here
            if saved:
                lend(src / "eval", out, [saved])
            append_jsonl(out / "rows.jsonl", {**held[at], "lent_by": held[at].get("lent_by", src.name)})
            del want[at]
            lenders.append(src.name)
    if lenders:
        print(f"reused {len(lenders)} evaluation rows from {', '.join(dict.fromkeys(lenders))} (same keys)")
    return len(lenders)


def choose_augment(cfg: Config, ed: EvalData, runner: _Runner, seed: int, also: list[Job]) -> tuple[Config, dict]:
    """``eval.augment: auto``: train the strong row once (``seed``) with each candidate
    augmentation and keep the one with the best val accuracy (ties: the earlier
    candidate). ``also`` (runs that do not depend on the choice) trains alongside. The
    test split plays no part. Returns the config with the chosen augmentation."""
    if cfg.eval.augment != "auto":
        runner.run(cfg, also)
        return cfg, {"chosen": cfg.eval.augment, "by": "eval.augment (forced)"}
    candidates = list(dict.fromkeys(cfg.eval.augment_candidates))
    jobs = []
    for aug in candidates:
        c = with_augment(cfg, aug)
        arm = ARMS["strong"](c, ed)
        jobs.append(Job(arm, arm_key(c, arm), 0.0, seed, runner.out / "models" / f"strong-{aug}_r0_seed{seed}.safetensors"))
    runner.run(cfg, jobs + also)
    runner.state.wait_for_everyone()
    done = runner.done()
    val = {aug: done[(job.key, 0.0, seed)]["val_acc"] for aug, job in zip(candidates, jobs)}
    chosen = max(candidates, key=lambda a: (val[a], -candidates.index(a)))
    saved = jobs[candidates.index(chosen)].save_to  # the winner's weights, saved by its selection run
    if runner.state.is_main_process and saved.is_file():
        shutil.copyfile(saved, model_path(runner.out, "strong", 0.0, seed))
    return with_augment(cfg, chosen), {"chosen": chosen, "by": f"best val accuracy of the strong row, seed {seed}",
                                       "val_acc": val}


def evaluate(cfg: Config) -> dict:
    """Choose the baseline augmentation on val (``eval.augment: auto``), then run (or
    reuse) every (arm, r, seed) and summarise into eval/metrics.json + plots. Under
    ``accelerate launch`` the processes split the pending runs (each run is
    deterministic, so the rows are those of one process) and rank 0 summarises."""
    state = PartialState()
    mixes, auto = parse_mix(cfg.eval.mix, cfg.eval.auto_candidates)
    ed = load_eval_data(cfg, need_synthetic=any(r > 0 for r in mixes) or cfg.eval.replace_prob is not None)
    if cfg.eval.synthetic_labels == "teacher" and len(ed.syn_x):
        attach_teacher(cfg, ed)
    out = cfg.run_dir() / "eval"
    seeds = [cfg.seed + i for i in range(cfg.eval.seeds)]
    if state.is_main_process:
        sweep_temp(out)
        if ed.oracle:
            record_in_splits(cfg, "oracle", ed.oracle["ids"], ed.oracle_y.tolist())
    state.wait_for_everyone()
    runner = _Runner(ed, out)
    naive = ARMS["naive"](cfg, ed)  # its augmentation is its own: it trains while the baseline's is chosen
    cfg, choice = choose_augment(cfg, ed, runner, seeds[0], [Job(naive, arm_key(cfg, naive), 0.0, s, None) for s in seeds])
    arms = build_arms(cfg, ed)
    keys = {a.name: arm_key(cfg, a) for a in arms}
    runner.run(cfg, [Job(a, keys[a.name], r, s, model_path(out, a.name, r, s)
                         if s == seeds[0] and a.name in ("strong", "synthetic") else None)
                     for a in arms for r in (mixes[1:] if a.shares else [0.0]) for s in seeds])
    state.wait_for_everyone()
    metrics = _summarise_rows(cfg, ed, out, arms, keys, mixes, seeds, auto, choice) if state.is_main_process else None
    state.wait_for_everyone()
    return metrics if metrics is not None else json.loads((out / "metrics.json").read_text())


def _summarise_rows(cfg: Config, ed: EvalData, out: Path, arms: list[Arm], keys: dict[str, str], mixes: list[float],
                    seeds: list[int], auto: bool, choice: dict) -> dict:
    from genaug.evaluate.plots import write_plots

    done = {(r["key"], r["mix"], r["seed"]): r for r in read_jsonl(out / "rows.jsonl")}
    rows = {(a.name, r): {s: done[(keys[a.name], r, s)] for s in seeds}
            for a in arms for r in (mixes[1:] if a.shares else [0.0])}
    metrics = summarise(cfg, ed, rows, arms, keys, auto=auto, augment_choice=choice)
    atomic_write_json(out / "metrics.json", metrics)
    metrics["plots"] = write_plots(metrics, out)
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def _setting(arm: str, r: float, by_seed: dict[int, dict], base: dict[int, dict] | None) -> dict:
    """Mean and interval of every metric over seeds; with ``base``, the paired gains over it."""
    k = len(next(iter(by_seed.values()))["per_class_acc"])
    seeds = sorted(by_seed)
    out = {
        "arm": arm,
        "mix": r,
        "test_acc": t_interval([by_seed[s]["test_acc"] for s in seeds]),
        "test_f1": t_interval([by_seed[s]["test_f1"] for s in seeds]),
        "val_acc": t_interval([by_seed[s]["val_acc"] for s in seeds]),
        "per_class_acc": [sum(by_seed[s]["per_class_acc"][c] for s in seeds) / len(seeds) for c in range(k)],
        "confusion": [[sum(by_seed[s]["confusion"][i][j] for s in seeds) for j in range(k)] for i in range(k)],
        "seconds_per_run": sum(by_seed[s]["seconds"] for s in seeds) / len(seeds),
        "synthetic_share_seen": sum(by_seed[s].get("synthetic_share_seen", 0.0) for s in seeds) / len(seeds),
        "steps": {k: [by_seed[s].get(k) for s in seeds] for k in ("steps", "best_step", "cap")},
    }
    if base is not None:
        out["gain_acc"] = paired_gain({s: base[s]["test_acc"] for s in seeds}, {s: by_seed[s]["test_acc"] for s in seeds})
        out["gain_f1"] = paired_gain({s: base[s]["test_f1"] for s in seeds}, {s: by_seed[s]["test_f1"] for s in seeds})
        out["per_class_gain"] = [out["per_class_acc"][c] - sum(base[s]["per_class_acc"][c] for s in seeds) / len(seeds)
                                 for c in range(k)]
    return out


def captured_share(synthetic: dict, oracle: dict) -> dict:
    """Share of the oracle's paired gain that the synthetic set captures; ``None``
    (n/a) unless the oracle's gain interval lies above zero."""
    if oracle["lo"] is None or oracle["lo"] <= 0:
        return {"share": None, "why": "n/a: the oracle's gain is not significant (its interval includes 0), so this "
                "evaluation could not have detected a gain of that size"}
    return {"share": synthetic["mean"] / oracle["mean"], "why": None}


def budget_rule(cfg: Config) -> dict:
    """The training-length rule every row followed (see genaug.classify.budget)."""
    ec = cfg.eval
    if ec.steps is not None:
        return {"protocol": "fixed", "steps": ec.steps, "schedule": "cosine", "selection": "best val accuracy",
                "eval_every": ec.eval_every}
    return {"protocol": "converged", "schedule": ec.schedule, "epochs": ec.epochs, "min_steps": ec.min_steps,
            "max_steps": ec.max_steps, "patience": ec.patience, "lr_cuts": ec.lr_cuts if ec.schedule == "plateau" else 0,
            "eval_every": ec.eval_every, "selection": "best val accuracy"}


def _what_to_change(metrics: dict, cfg: Config) -> str:
    ec, seeds = cfg.eval, len(metrics["seeds"])
    longer = ("eval.steps (a fixed budget; unset it for the converged protocol)" if ec.steps is not None else
              f"a longer budget (eval.patience {ec.patience}, eval.epochs {ec.epochs:g}, eval.max_steps {ec.max_steps})")
    return (f"more seeds (eval.seeds, now {seeds}: the interval narrows as 1/sqrt(seeds)), a larger validation split "
            f"(data.val_fraction; {metrics['real']['val']} images pick every checkpoint now), {longer}, or a larger "
            "share r / more held-out images in the oracle")


def sensitivity(metrics: dict, cfg: Config) -> dict:
    """Could this evaluation have seen a gain? The oracle (held-out real images in the
    synthetic slots) is the positive control: where its gain interval includes zero,
    a synthetic set's "no difference" is no finding about the set."""
    oracle = metrics.get("oracle")
    if not oracle or not oracle.get("settings"):
        return {"detectable": None, "text": "No oracle row (no held-out real labeled images): this evaluation cannot "
                "say how large a gain it could detect. Set eval.oracle_dir to a folder of extra labeled real images, "
                "or hold a share of each class out with --set data.hold_out=0.2 (the plan does so when every class has "
                "50 or more training images)."}
    by_mix = {}
    for o in oracle["settings"]:
        g = o["gain_acc"]
        half = None if g["lo"] is None else (g["hi"] - g["lo"]) / 2
        seen = bool(g["lo"] is not None and g["lo"] > 0)
        text = (f"r={o['mix']:g}: held-out real images in the same slots gain {fmt(g, signed=True)}, so a gain of that "
                "size is detectable here" if seen else
                f"r={o['mix']:g}: this evaluation could not have detected a gain of this size: held-out real images in "
                f"the same slots gave {fmt(g, signed=True)}, an interval that includes zero, so a synthetic set could "
                f"be as useful as real images and still read as no difference. To make it see one: "
                + _what_to_change(metrics, cfg))
        by_mix[str(o["mix"])] = {"detectable": seen, "half_width": half, "text": text}
    return {"detectable": all(v["detectable"] for v in by_mix.values()), "by_mix": by_mix,
            "text": " ".join(v["text"] + "." for v in by_mix.values())}


def auto_choice(settings: list[dict]) -> dict:
    """The setting ``--mix auto`` picks: the best mean validation accuracy, ties to the
    smaller share. Chosen on validation only; the test split plays no part."""
    return max(settings, key=lambda s: (s["val_acc"]["mean"], -s["mix"]))


def summarise(cfg: Config, ed: EvalData, rows: dict[tuple[str, float], dict[int, dict]], arms: list[Arm],
              keys: dict[str, str], *, auto: bool, augment_choice: dict) -> dict:
    """metrics.json: ``settings`` = the strong baseline then + synthetic at each r (gains
    over the strong baseline); ``baselines`` = naive and strong and what rebalancing +
    augmentation alone give; ``oracle`` = held-out real images in the same slots."""
    strong = rows[("strong", 0.0)]
    by_name = {a.name: a for a in arms}
    share_arm = lambda name: [_setting(name, r, rows[(name, r)], strong) for (n, r) in sorted(rows) if n == name]
    settings = [_setting("strong", 0.0, strong, None)] + share_arm("synthetic")
    naive = _setting("naive", 0.0, rows[("naive", 0.0)], None)
    metrics = {
        "schema": 2, "run": cfg.run, "key": stable_hash(keys), "keys": keys, "classes": ed.classes,
        "model": cfg.eval.model, "strategy": cfg.eval.strategy, "pretrained": cfg.eval.pretrained or bool(cfg.eval.pretrained_file),
        "steps": cfg.eval.steps, "budget": budget_rule(cfg), "batch_size": cfg.eval.batch_size, "seeds": sorted(strong),
        "real": {"train": len(ed.train_x), "val": len(ed.val_x), "test": next(iter(strong.values()))["n_test"],
                 "train_per_class": torch.bincount(ed.train_y, minlength=len(ed.classes)).tolist()},
        "real_sampling": cfg.eval.real_sampling, "augment": cfg.eval.augment,
        "augment_choice": augment_choice,
        "arms": {a.name: {"title": a.title, "explains": a.explains, "sampling": a.sampling, "augment": a.augment}
                 for a in arms},
        "synthetic": ed.synthetic, "baseline_mix": 0.0, "settings": settings,
        "baselines": {"naive": naive, "strong": settings[0], "strong_over_naive": {
            "acc": paired_gain({s: v["test_acc"] for s, v in rows[("naive", 0.0)].items()}, {s: v["test_acc"] for s, v in strong.items()}),
            "f1": paired_gain({s: v["test_f1"] for s, v in rows[("naive", 0.0)].items()}, {s: v["test_f1"] for s, v in strong.items()})}},
        "per_seed": [dict(row, arm=name) for (name, r) in sorted(rows) for row in rows[(name, r)].values()],
    }
    if "oracle" in by_name:
        oracle = share_arm("oracle")
        info = {k: v for k, v in ed.oracle.items() if k != "ids"}
        syn = {s["mix"]: s for s in settings[1:]}
        metrics["oracle"] = {**info, "settings": oracle,
                             "captured": {str(o["mix"]): captured_share(syn[o["mix"]]["gain_acc"], o["gain_acc"])
                                          for o in oracle if o["mix"] in syn}}
    if "pool" in by_name:
        metrics["pool"] = _pool_summary(ed, rows, share_arm)
    if "fixmatch" in by_name:
        fm = rows[("fixmatch", 0.0)]
        metrics["fixmatch"] = {**{k: v for k, v in by_name["fixmatch"].extra_info.items() if k != "ids_hash"},
                               "settings": [_setting("fixmatch", 0.0, fm, strong)],
                               "confident_share": [fm[s].get("pool_confident_share") for s in sorted(fm)]}
        both = share_arm("fixmatch_synthetic") if "fixmatch_synthetic" in by_name else []
        metrics["fixmatch"]["fixmatch_synthetic"] = both
        metrics["fixmatch"]["synthetic_over_fixmatch"] = {  # DPT's question, paired: FixMatch + synthetic vs FixMatch
            str(s["mix"]): _paired_over(rows, ("fixmatch", 0.0), ("fixmatch_synthetic", s["mix"])) for s in both}
    if "teacher" in by_name:
        teacher = share_arm("teacher")
        metrics["teacher"] = {**{k: v for k, v in ed.teacher.items() if k != "ids_hash"}, "settings": teacher,
                              "over_condition": {  # paired: teacher labels vs conditioning labels at the same r
                                  str(s["mix"]): _paired_over(rows, ("synthetic", s["mix"]), ("teacher", s["mix"]))
                                  for s in teacher if ("synthetic", s["mix"]) in rows}}
    if "replace" in by_name:
        metrics["replace"] = {**by_name["replace"].extra_info,
                              "settings": [_setting("replace", 0.0, rows[("replace", 0.0)], strong)]}
    metrics["sensitivity"] = sensitivity(metrics, cfg) if len(settings) > 1 else None  # real-only: nothing to detect
    metrics["budget_limited"] = budget_limited(metrics)
    if auto:
        best = auto_choice(settings)
        metrics["auto"] = {"chosen_mix": best["mix"], "by": "mean val accuracy",
                           "val_acc_by_mix": {str(s["mix"]): s["val_acc"]["mean"] for s in settings}}
    return metrics


def _paired_over(rows: dict, base: tuple[str, float], other: tuple[str, float]) -> dict:
    """Test-accuracy gain of the row ``other`` over the row ``base`` (each (arm, r)), paired by seed."""
    return paired_gain({k: v["test_acc"] for k, v in rows[base].items()},
                       {k: v["test_acc"] for k, v in rows[other].items()})


def _pool_summary(ed: EvalData, rows: dict, share_arm) -> dict:
    """The control rows of a run with an unlabeled pool: + pseudo-labeled pool and
    + pool + synthetic (gains over the strong baseline), and what the synthetic images
    add on top of the pool (paired: pool + synthetic vs pool at the same r)."""
    pool = share_arm("pool")
    both = share_arm("pool_synthetic") if any(n == "pool_synthetic" for n, _ in rows) else []
    over = {}
    for s in both:
        over[str(s["mix"])] = _paired_over(rows, ("pool", s["mix"]), ("pool_synthetic", s["mix"]))
    return {**ed.pool, "settings": pool, "pool_synthetic": both, "synthetic_over_pool": over}


def rebalancing_caution(metrics: dict) -> str | None:
    """A warning when the gains are measured over a baseline that draws an imbalanced
    split uniformly: part of a gain can then be rebalancing, not the generator."""
    counts = [c for c in metrics["real"].get("train_per_class", []) if c]
    if not counts or max(counts) <= 1.5 * min(counts) or metrics.get("real_sampling", "uniform") != "uniform":
        return None
    return (f"Caution: the training split is imbalanced ({max(counts)} to {min(counts)} images per class), the baseline "
            "draws it uniformly and synthetic slots are spread evenly over the classes, so part or all of a gain can "
            "come from rebalancing rather than from the generator. The strong baseline (eval.real_sampling=balanced, "
            "the default) separates the two.")


def steps_text(s: dict) -> str:
    """Mean steps used / mean best step of a setting's runs (the cap in brackets when all share one)."""
    st = s.get("steps") or {}
    used, best, cap = ([v for v in st.get(k, []) if v is not None] for k in ("steps", "best_step", "cap"))
    if not used:
        return "-"
    mean = lambda v: f"{sum(v) / len(v):.0f}"
    return f"{mean(used)} / {mean(best)}" + (f" (cap {cap[0]})" if cap and len(set(cap)) == 1 else "")


def budget_limited(metrics: dict) -> str | None:
    """A warning naming the rows whose runs were still improving when they hit their cap
    (best step within the last patience window): their budget, not their data, may
    have limited them."""
    b = metrics.get("budget") or {}
    if b.get("protocol") != "converged":
        return None
    window = b["patience"] * b["eval_every"]
    hit = []
    pool = metrics.get("pool") or {}
    for s in [*([metrics["baselines"]["naive"]] if metrics.get("baselines") else []), *metrics["settings"],
              *(metrics.get("oracle") or {}).get("settings", []), *pool.get("settings", []),
              *pool.get("pool_synthetic", []), *(metrics.get("fixmatch") or {}).get("settings", []),
              *(metrics.get("fixmatch") or {}).get("fixmatch_synthetic", []), *(metrics.get("teacher") or {}).get("settings", [])]:
        st = s.get("steps")
        if not st:
            continue
        n = sum(1 for used, best, cap in zip(st["steps"], st["best_step"], st["cap"])
                if used == cap and best is not None and best > cap - window)
        if n:
            hit.append(f"{s['arm']} r={s['mix']:g} ({n} of {len(st['steps'])} seeds)")
    if not hit:
        return None
    return ("Still improving at the step cap: " + ", ".join(hit) + "; their budget may have limited them (raise "
            "eval.epochs or eval.max_steps).")


def coverage_text(metrics: dict) -> str | None:
    """Which classes the synthetic set leaves empty (their gains measure no synthetic
    image of their own), or None when it covers every class."""
    per_class = (metrics.get("synthetic") or {}).get("per_class") or []
    empty = [metrics["classes"][c] for c, n in enumerate(per_class) if not n]
    if not per_class or not empty:
        return None
    return (f"The synthetic set covers {len(per_class) - len(empty)} of {len(per_class)} classes: no synthetic image "
            f"for {', '.join(repr(c) for c in empty)}, so any change there comes from the other classes' images.")


def budget_text(metrics: dict) -> str:
    b = metrics.get("budget") or {"protocol": "fixed", "steps": metrics.get("steps")}
    if b["protocol"] == "fixed":
        return f"{b['steps']} steps (fixed)"
    lr = (f"{b['lr_cuts']} lr cut(s)" if b.get("schedule", "plateau") == "plateau" else "cosine over the cap")
    return (f"trained to convergence on val (patience {b['patience']} x {b['eval_every']} steps, {lr}, "
            f"cap {b['epochs']:g} epochs in [{b['min_steps']}, {b['max_steps']}] steps)")


def _row(title: str, s: dict, gain: str, mark: str = "") -> str:
    return (f"{title:<24} {s['mix']:>5g}  {s['synthetic_share_seen']:>9.3f}  {fmt(s['test_acc']):<26} "
            f"{fmt(s['test_f1']):<26} {gain:<28}{steps_text(s):<24}{mark}")


def results_table(metrics: dict) -> str:
    """The terminal table: naive, strong, + synthetic at each r, oracle; gains over the strong baseline."""
    syn = metrics["synthetic"]
    source = f"external {syn['dir']}" if syn.get("external") else "kept"
    choice = metrics.get("augment_choice") or {}
    lines = [f"{metrics['model']} ({metrics['strategy']}), {budget_text(metrics)}, batch {metrics['batch_size']}, "
             f"seeds {metrics['seeds']}; augmentation {metrics['augment']} ({choice.get('by', 'eval.augment')}); "
             f"real train {metrics['real']['train']}, synthetic {source} {syn['n']}; "
             f"test n={metrics['real']['test']}; mean [95% t-interval]; gains are paired, over the strong baseline",
             f"{'row':<24} {'mix':>5}  {'seen extra':>9}  {'test accuracy':<26} {'macro-F1':<26} {'paired gain (accuracy)':<28}"
             f"{'steps used / best (mean)':<24}"]
    base = metrics.get("baselines")
    if base:
        lines.append(_row("naive real-only", base["naive"], "(not the baseline)"))
    chosen = (metrics.get("auto") or {}).get("chosen_mix")
    for s in metrics["settings"]:
        title = "strong real-only" if s["mix"] == 0 else "+ synthetic"
        gain = fmt(s["gain_acc"], signed=True) if "gain_acc" in s else "(baseline)"
        lines.append(_row(title, s, gain, "  <- auto" if chosen == s["mix"] else ""))
    oracle = metrics.get("oracle")
    for s in (oracle or {}).get("settings", []):
        lines.append(_row("oracle (held-out real)", s, fmt(s["gain_acc"], signed=True)))
    for s in (metrics.get("teacher") or {}).get("settings", []):
        lines.append(_row("+ synthetic (teacher)", s, fmt(s["gain_acc"], signed=True)))
    for s in (metrics.get("replace") or {}).get("settings", []):
        lines.append(_row(f"+ synthetic (replace p={metrics['replace']['p']:g})", s, fmt(s["gain_acc"], signed=True)))
    pool = metrics.get("pool") or {}
    for title, key in (("+ pseudo-labeled pool", "settings"), ("+ pool + synthetic", "pool_synthetic")):
        for s in pool.get(key, []):
            lines.append(_row(title, s, fmt(s["gain_acc"], signed=True)))
    fixmatch = metrics.get("fixmatch") or {}
    for title, key in (("+ pool (FixMatch)", "settings"), ("+ FixMatch + synthetic", "fixmatch_synthetic")):
        for s in fixmatch.get(key, []):
            lines.append(_row(title, s, fmt(s["gain_acc"], signed=True)))
    if base:
        lines.append(f"rebalancing + augmentation alone (strong - naive): {fmt(base['strong_over_naive']['acc'], signed=True)}")
    for r, c in ((oracle or {}).get("captured") or {}).items():
        lines.append(f"share of the oracle's gain captured at r={float(r):g}: "
                     + (f"{c['share']:.2f}" if c["share"] is not None else c["why"]))
    sens = metrics.get("sensitivity")
    if sens and not sens.get("detectable"):
        lines.append("Sensitivity: " + sens["text"])
    if coverage := coverage_text(metrics):
        lines.append(coverage)
    capped = budget_limited(metrics)
    if capped:
        lines.append(capped)
    for r, g in (pool.get("synthetic_over_pool") or {}).items():
        lines.append(f"synthetic on top of the pseudo-labeled pool at r={float(r):g} (pool + synthetic - pool): "
                     f"{fmt(g, signed=True)}")
    teacher = metrics.get("teacher") or {}
    for r, g in (teacher.get("over_condition") or {}).items():
        lines.append(f"teacher labels vs conditioning labels at r={float(r):g} (the {teacher['model']} disagrees with the "
                     f"condition on {teacher['disagree']:.1%} of the synthetic images): {fmt(g, signed=True)}")
    for r, g in (fixmatch.get("synthetic_over_fixmatch") or {}).items():
        lines.append(f"synthetic on top of FixMatch at r={float(r):g} (FixMatch + synthetic - FixMatch; the answer "
                     f"when a pool exists): {fmt(g, signed=True)}")
    if pool:
        lines.append(f"pool: {pool['n']} of {pool['pool_size']} images from {pool['source']} pseudo-labeled with "
                     f"confidence >= {pool['threshold']:g}")
    caution = rebalancing_caution(metrics)
    if caution:
        lines.append(caution)
    return "\n".join(lines)


def model_path(out: Path, arm: str, r: float, seed: int) -> Path:
    return out / "models" / f"{arm}_r{r:g}_seed{seed}.safetensors"


def eval_dir(cfg: Config) -> Path:
    return cfg.run_dir() / "eval"

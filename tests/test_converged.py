"""The converged evaluation (issue 27): budgets, early stopping with lr cuts, the
augmentation chosen on val, the sensitivity wording, worker processes, and class names
that round-trip through export -> --synthetic / oracle_dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from genaug.config import EvalConfig, load_config
from genaug.data import load_data
from genaug.data.builtin import DEBIAN_FASHION_MNIST
from genaug.data.tools import export_imagefolder
from genaug.evaluate import run as eval_run
from genaug.classify.budget import Budget, Plateau, row_budget
from genaug.evaluate.data import load_eval_data
from genaug.classify.trainer import train_once
from genaug.evaluate.workers import resolve_workers

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def cfg_for(tmp_path, *extra):
    """test_honest's smoke evaluation (every test here sets its own eval.steps), 2 warm-up steps."""
    from test_honest import cfg_for as honest_cfg

    return honest_cfg(tmp_path, "eval.warmup_steps=2", *extra)


# --- budget rules ---------------------------------------------------------------------

def test_row_cap_is_epochs_of_the_rows_own_data_clamped():
    ec = EvalConfig(batch_size=32, epochs=10, min_steps=100, max_steps=1000)
    assert row_budget(ec, 32).cap == 100  # 10 steps of data: the floor
    assert row_budget(ec, 640).cap == 200  # 10 epochs of 640 images at 32 per step
    assert row_budget(ec, 10**6).cap == 1000  # the ceiling
    assert not row_budget(ec, 640).fixed
    fixed = row_budget(EvalConfig(steps=37), 10**6)
    assert fixed.fixed and fixed.cap == 37 and fixed.schedule == "cosine"


def test_plateau_cuts_the_lr_then_stops_and_a_fixed_budget_never_does():
    b = Budget(cap=10**6, fixed=False, eval_every=1, patience=2, lr_cuts=1, warmup=0)
    p = Plateau(b)
    verdicts = [p.update(a) for a in (0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7)]
    assert verdicts == ["best", "best", "", "cut", "best", "", "stop"]
    assert p.cuts == 1 and p.lr_scale == pytest.approx(0.1)
    fixed = Plateau(Budget(cap=5, fixed=True, eval_every=1, patience=0, lr_cuts=0, warmup=0))
    assert [fixed.update(a) for a in (0.5, 0.4, 0.4, 0.4, 0.4)] == ["best", "", "", "", ""]


def test_fixed_steps_give_exactly_n_steps_in_every_row(tmp_path):
    cfg = cfg_for(tmp_path, "eval.steps=7", "eval.mix=0")
    metrics = eval_run.evaluate(cfg)
    rows = [json.loads(line) for line in (cfg.run_dir() / "eval" / "rows.jsonl").read_text().splitlines()]
    assert rows and all(r["steps"] == 7 and r["cap"] == 7 for r in rows)
    assert metrics["budget"]["protocol"] == "fixed" and metrics["steps"] == 7
    assert metrics["settings"][0]["steps"]["steps"] == [7, 7]


def test_converged_row_stops_on_a_plateau_and_tests_its_best_val_weights(tmp_path, monkeypatch):
    import genaug.classify.trainer as train

    accs = iter([0.5] + [0.4] * 100)  # the first check is the best; nothing after it improves
    monkeypatch.setattr(train, "_val_accuracy", lambda t, ed: next(accs))
    cfg = cfg_for(tmp_path, "eval.steps=null", "eval.min_steps=1000", "eval.max_steps=1000", "eval.patience=2",
                  "eval.lr_cuts=1", "eval.warmup_steps=0")
    ed = load_eval_data(cfg, need_synthetic=False)
    row = train_once(cfg, ed, 0.0, 0)
    assert row["val_acc"] == 0.5
    # best at the first check (step 5); 2 stale checks -> cut; 2 more -> stop at step 25
    assert row["cap"] == 1000 and row["best_step"] == 5 and row["steps"] == 25 and row["lr_cuts"] == 1


def test_ema_weights_are_the_ones_validated_and_tested(tmp_path):
    from genaug.classify.trainer import _train_step, _trainer

    cfg = cfg_for(tmp_path, "eval.steps=5")
    ed = load_eval_data(cfg, need_synthetic=False)
    t = _trainer(cfg.eval, ed, row_budget(cfg.eval, len(ed.train_x)))
    start = {k: v.clone() for k, v in t.selected.state_dict().items()}
    for _ in range(4):
        _train_step(t, ed.train_x[:16], ed.train_y[:16])
    assert t.selected is t.ema.module
    name = next(n for n, p in t.model.named_parameters() if p.requires_grad)
    ema, raw = t.selected.state_dict()[name], t.model.state_dict()[name]
    assert not torch.equal(ema, start[name]) and not torch.equal(ema, raw)  # averaged: moved, but not the raw weights
    off = cfg.eval.model_copy(update={"ema": False})
    assert _trainer(off, ed, row_budget(off, 10)).selected is not None and _trainer(off, ed, row_budget(off, 10)).ema is None


def test_converged_is_the_default_and_metrics_report_steps_per_row(tmp_path):
    from genaug.config import Config

    assert Config().eval.steps is None and Config().eval.augment == "auto"
    cfg = cfg_for(tmp_path, "eval.steps=null", "eval.min_steps=10", "eval.max_steps=20", "eval.mix=0")
    metrics = eval_run.evaluate(cfg)
    assert metrics["budget"]["protocol"] == "converged"
    for s in [metrics["baselines"]["naive"], *metrics["settings"]]:
        st = s["steps"]
        assert all(10 <= cap <= 20 for cap in st["cap"]) and all(b <= u <= c for b, u, c in
                                                                   zip(st["best_step"], st["steps"], st["cap"]))
    assert "steps used / best" in eval_run.results_table(metrics)


# --- the baseline augmentation, chosen on val ----------------------------------------

def test_augment_auto_picks_the_best_val_candidate_and_every_row_but_naive_uses_it(tmp_path):
    cfg = cfg_for(tmp_path, "eval.steps=10", "eval.augment=auto", "eval.augment_candidates=[none,shift,randaugment]",
                  "eval.mix=0.5", "sample.per_class=4")
    from test_eval import write_noise_dataset

    write_noise_dataset(cfg, per_class=4)
    metrics = eval_run.evaluate(cfg)
    choice = metrics["augment_choice"]
    assert set(choice["val_acc"]) == {"none", "shift", "randaugment"}
    best = max(choice["val_acc"].values())
    assert choice["val_acc"][choice["chosen"]] == best
    assert choice["chosen"] == next(a for a in ("none", "shift", "randaugment") if choice["val_acc"][a] == best)  # ties: first
    arms = metrics["arms"]
    assert metrics["augment"] == choice["chosen"]
    assert all(a["augment"] == choice["chosen"] for name, a in arms.items() if name != "naive")
    # the chosen candidate's selection run is the strong row's first seed (reused, not retrained)
    rows = [json.loads(line) for line in (cfg.run_dir() / "eval" / "rows.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r["arm"] == "strong" and r["seed"] == cfg.seed]) == 3
    assert (cfg.run_dir() / "eval" / "models" / f"strong_r0_seed{cfg.seed}.safetensors").is_file()


def test_randaugment_noflip_draws_like_randaugment_but_never_flips():
    from genaug.classify.views import augment

    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[..., :, :2] = 255  # a bar on the left: a flip moves it right
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    augment(x, "randaugment_noflip", g1)
    augment(x, "randaugment", g2)
    assert torch.equal(torch.rand(1, generator=g1), torch.rand(1, generator=g2))  # same draws: paired runs stay in step
    plain = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    plain[..., :, :2] = 255
    out = augment(plain, "randaugment_noflip", torch.Generator().manual_seed(4)).float()
    assert (out[..., :, -2:].mean() <= out[..., :, :2].mean())  # the bar stays on the left


# --- sensitivity -----------------------------------------------------------------------

def _metrics(oracle_gain: dict) -> dict:
    ci = lambda m, lo, hi: {"mean": m, "lo": lo, "hi": hi, "std": 0.01, "n": 3}
    s = lambda mix, gain=None: {"mix": mix, "test_acc": ci(0.8, 0.79, 0.81), "test_f1": ci(0.8, 0.79, 0.81),
                                "val_acc": ci(0.8, 0.79, 0.81), "synthetic_share_seen": mix,
                                **({"gain_acc": gain} if gain else {})}
    syn_gain = ci(-0.01, -0.03, 0.01)
    return {"model": "m", "strategy": "full", "steps": None, "budget": {"protocol": "fixed", "steps": 300},
            "batch_size": 32, "seeds": [0, 1, 2], "augment": "shift", "real": {"train": 100, "val": 600, "test": 1000},
            "synthetic": {"n": 10}, "settings": [s(0.0), s(0.5, syn_gain)],
            "oracle": {"settings": [s(0.5, oracle_gain)],
                       "captured": {"0.5": eval_run.captured_share(syn_gain, oracle_gain)}}}


def test_sensitivity_says_the_evaluation_could_not_see_a_gain_when_the_oracle_interval_includes_zero():
    cfg = load_config(SMOKE, ["eval.steps=300"])
    m = _metrics({"mean": 0.01, "lo": -0.01, "hi": 0.03, "std": 0.01, "n": 3})
    m["sensitivity"] = sens = eval_run.sensitivity(m, cfg)
    assert sens["detectable"] is False
    assert "could not have detected a gain of this size" in sens["text"]
    assert "eval.seeds" in sens["text"] and "data.val_fraction" in sens["text"] and "eval.steps" in sens["text"]
    table = eval_run.results_table(m)
    assert "could not have detected" in table and "no gain to capture" not in table
    assert m["oracle"]["captured"]["0.5"]["share"] is None  # no share against a non-significant oracle


def test_sensitivity_reports_the_share_only_against_a_significant_oracle():
    cfg = load_config(SMOKE, [])
    m = _metrics({"mean": 0.05, "lo": 0.03, "hi": 0.07, "std": 0.01, "n": 3})
    m["sensitivity"] = sens = eval_run.sensitivity(m, cfg)
    assert sens["detectable"] is True and "could not" not in sens["text"]
    assert m["oracle"]["captured"]["0.5"]["share"] == pytest.approx(-0.2)
    assert "Sensitivity" not in eval_run.results_table(m)
    del m["oracle"]
    assert eval_run.sensitivity(m, cfg)["detectable"] is None  # no oracle: sensitivity unknown, said so


def test_rows_still_improving_at_their_cap_are_named():
    m = _metrics({"mean": 0.05, "lo": 0.03, "hi": 0.07, "std": 0.01, "n": 3})
    m["budget"] = {"protocol": "converged", "patience": 2, "eval_every": 10}
    for s in m["settings"]:
        s["arm"] = "strong" if s["mix"] == 0 else "synthetic"
        s["steps"] = {"steps": [50, 100], "best_step": [30, 30], "cap": [100, 100]}  # stopped early / hit the cap
    o = m["oracle"]["settings"][0]
    o["arm"], o["steps"] = "oracle", {"steps": [100, 100], "best_step": [90, 100], "cap": [100, 100]}
    text = eval_run.budget_limited(m)
    assert text.startswith("Still improving at the step cap: oracle r=0.5 (2 of 2 seeds)") and "strong" not in text
    m["budget"]["protocol"] = "fixed"
    assert eval_run.budget_limited(m) is None  # a fixed budget is the user's choice


# --- workers ---------------------------------------------------------------------------

def test_auto_workers_only_when_the_runs_repay_a_process_start():
    assert resolve_workers("auto", runs=1, steps=10**6) == 1
    assert resolve_workers("auto", runs=6, steps=100) == 1
    assert resolve_workers("auto", runs=6, steps=10**6, processes=2) == 1  # accelerate launch splits already
    assert resolve_workers(3, runs=2, steps=1) == 2
    many = resolve_workers("auto", runs=6, steps=10**6)
    assert 1 <= many <= min(6, len(os.sched_getaffinity(0)))


def test_worker_processes_write_the_same_rows_as_one_process(tmp_path, monkeypatch):
    torch.set_num_threads(1)  # workers train single-threaded: same kernels, same numbers
    try:
        a = eval_run.evaluate(cfg_for(tmp_path / "a", "eval.steps=6", "eval.mix=0", "eval.workers=1"))
        b = eval_run.evaluate(cfg_for(tmp_path / "b", "eval.steps=6", "eval.mix=0", "eval.workers=2"))
    finally:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    strip = lambda rows: sorted((r["arm"], r["seed"], r["val_acc"], r["test_acc"], r["steps"]) for r in rows)
    assert strip(a["per_seed"]) == strip(b["per_seed"])
    assert a["settings"][0]["test_acc"] == b["settings"][0]["test_acc"]


@pytest.mark.slow  # three processes x two commands (~40 s); the crash matrix is slow too
def test_a_killed_worker_ends_with_one_line_and_the_rerun_resumes(tmp_path):
    from stages import genaug, ok

    sets = ["eval.workers=2", "eval.mix=0", "eval.steps=40", "eval.seeds=3"]
    # each worker counts its own passes: the one that takes the third naive run dies at its 50th step,
    # after both first runs (40 steps each) have come back
    failed = genaug(tmp_path, "eval-classifier", fault="step@50", sets=sets)
    assert failed.returncode == 1 and "worker process died" in failed.stderr and "Traceback" not in failed.stderr
    rows_path = tmp_path / "runs/smoke/eval/rows.jsonl"
    before = len(rows_path.read_text().splitlines()) if rows_path.exists() else 0
    ok(genaug(tmp_path, "eval-classifier", sets=sets))
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert len(rows) == 6 and len({(r["arm"], r["seed"]) for r in rows}) == 6  # naive and strong, 3 seeds, each once
    assert 1 <= before < 6  # the runs that finished before the kill were kept, not retrained


# --- class names that are not folder names ---------------------------------------------

@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed "
                    "(.ci/run installs it)")
def test_exported_fashion_mnist_train_split_is_accepted_as_synthetic_and_oracle_dir(tmp_path):
    cfg = load_config(None, ["data.source=fashion-mnist", "data.real_per_class=3", "data.val_fraction=0.01",
                             f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen",
                             f"eval.synthetic_dir={tmp_path}/exported"])
    data = load_data(cfg.data)
    assert "T-shirt/top" in data.classes
    export_imagefolder(data, tmp_path / "exported")
    assert (tmp_path / "exported" / "T-shirt_top").is_dir()
    ed = load_eval_data(cfg, need_synthetic=True)
    assert ed.synthetic["n"] == 30 and ed.synthetic["per_class"] == [3] * 10
    assert torch.equal(ed.syn_x[ed.syn_y == 0][0], ed.train_x[ed.train_y == 0][0])  # T-shirt/top read as class 0
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"oracle_dir": str(tmp_path / "exported")})})
    assert load_eval_data(cfg, need_synthetic=True).oracle["n"] == 30
    # and as an unlabeled pool (any layout): 6 per class exported, 3 per class labeled
    six = load_config(None, ["data.source=fashion-mnist", "data.real_per_class=6", "data.val_fraction=0.01"])
    export_imagefolder(load_data(six.data), tmp_path / "six")
    pooled = load_data(cfg.data.model_copy(update={"unlabeled": str(tmp_path / "six")}))
    assert 0 < len(pooled.unlabeled) and len(pooled.unlabeled) + pooled.unlabeled_info["dropped_labeled"] == 60

"""The benchmark scripts' bookkeeping: which share 'auto' reports, what the table and
BENCHMARKS.md sections hold (the measurements themselves are the scripts' runs)."""

import argparse
import importlib.util
import sys
from pathlib import Path


SCRIPTS = Path(__file__).parents[1] / "scripts"


def load(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ci(mean: float) -> dict:
    return {"mean": mean, "lo": mean - 0.01, "hi": mean + 0.01, "std": 0.01, "n": 5}


def setting(mix: float, val: float, test: float, base: float = 0.5) -> dict:
    s = {"mix": mix, "val_acc": ci(val), "test_acc": ci(test), "test_f1": ci(test - 0.01)}
    if mix > 0:
        s["gain_acc"] = ci(test - base)
    return s


def part(settings: list[dict], n: int) -> dict:
    return {"metrics": {"settings": settings, "seeds": [0, 1], "real": {"train": 100}, "synthetic": {"n": n},
                        "model": "resnet_fast28", "steps": 300, "batch_size": 32},
            "fidelity": {"inception": {"fid": 120.5, "kid": 0.05}, "judge": {"fid": 3.2, "kid": 0.01}}}


def test_auto_takes_the_best_validation_share_never_cas_and_ties_go_to_the_smaller():
    bq = load("bench_quality")
    settings = [setting(0.0, 0.60, 0.5), setting(0.1, 0.70, 0.4), setting(0.3, 0.70, 0.9), setting(0.5, 0.65, 0.99),
                setting(1.0, 0.99, 0.3)]
    assert bq.auto_choice(settings)["mix"] == 0.1  # best val (tie with 0.3 -> smaller); CAS and test play no part
    assert bq.auto_choice([setting(0.0, 0.9, 0.5), setting(0.1, 0.8, 0.9)])["mix"] == 0.0


def test_table_has_baseline_every_share_auto_and_cas_for_both_filter_settings():
    bq = load("bench_quality")
    settings = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.55), setting(0.3, 0.6, 0.52), setting(0.5, 0.6, 0.51),
                setting(1.0, 0.4, 0.3)]
    results = [{"k": 10, "generator": "gan", "filtered": part(settings, 800), "unfiltered": part(settings, 1000)}]
    args = argparse.Namespace(per_class=[10], generators=["gan"], seeds=5, seed=0, config=bq.CONFIG,
                              set=["eval.steps=300"])
    text = bq.table(results, args)
    assert "--set eval.steps=300" in text and "real only + RandAugment (baseline)" in text
    for name in ("filtered", "unfiltered"):
        for label in ("mix 0.1", "mix 0.3", "mix 0.5", "auto (picked 0.1 on val)", "CAS (synthetic only)"):
            assert f"+ GAN {name}, {label} |" in text
    assert "+0.0500 [+0.0400, +0.0600]" in text and "-0.2000" in text and "120.50 / 0.0500" in text


def test_write_section_replaces_only_its_markers(tmp_path):
    bs = load("bench_speed")
    md = tmp_path / "B.md"
    md.write_text("intro\n<!-- a -->\nold\n<!-- /a -->\n<!-- b -->\nkeep\n<!-- /b -->\n")
    bs.write_section(md, "new", "a")
    bs.write_section(md, "added", "c")
    text = md.read_text()
    assert "old" not in text and "<!-- a -->\nnew\n<!-- /a -->" in text and "keep" in text
    assert text.rstrip().endswith("<!-- c -->\nadded\n<!-- /c -->")


def test_merge_replaces_a_setting_and_keeps_the_others():
    bq = load("bench_quality")
    old = [{"k": 10, "generator": "gan", "v": 1}, {"k": 50, "generator": "gan", "v": 1}]
    merged = bq.merge(old, [{"k": 10, "generator": "diffusion", "v": 2}, {"k": 50, "generator": "gan", "v": 2}])
    assert [(r["k"], r["generator"], r["v"]) for r in merged] == [(10, "diffusion", 2), (10, "gan", 1), (50, "gan", 2)]


def test_table_names_each_command_and_splits_baselines_that_disagree():
    bq = load("bench_quality")
    settings = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.55), setting(1.0, 0.4, 0.3)]
    other = [setting(0.0, 0.6, 0.49, base=0.49), setting(0.1, 0.7, 0.55, base=0.49), setting(1.0, 0.4, 0.3, base=0.49)]
    results = [{"k": 10, "generator": "gan", "command": "python scripts/bench_quality.py --generators gan",
                "device": "CPU (a)", "date": "2026-11-23", "budget": "DCGAN, 1,000 steps",
                "filtered": part(settings, 800), "unfiltered": part(settings, 1000)},
               {"k": 10, "generator": "diffusion", "command": "python scripts/bench_quality.py --generators diffusion",
                "device": "CPU (a)", "date": "2026-11-24", "budget": "UNet [16, 32, 32], 2,000 steps",
                "filtered": part(other, 900), "unfiltered": part(other, 1000)}]
    args = argparse.Namespace(per_class=[10], generators=["gan"], seeds=5, seed=0, config=bq.CONFIG, set=None)
    text = bq.table(results, args)
    assert "- `python scripts/bench_quality.py --generators gan` on CPU (a), 2026-11-23" in text
    assert "- `python scripts/bench_quality.py --generators diffusion` on CPU (a), 2026-11-24" in text
    assert "- DIFFUSION: UNet [16, 32, 32], 2,000 steps" in text
    assert text.count("| real only + RandAugment (baseline") == 4  # one per run: they differ
    assert "(baseline of the DIFFUSION unfiltered run) | 0 | 0.4900" in text
    same = bq.table([results[0]], args)
    assert same.count("| real only + RandAugment (baseline) |") == 1


def test_benchmark_config_loads_with_the_cpu_sized_unet():
    from genaug.config import load_config

    cfg = load_config(str(Path(__file__).parents[1] / "configs" / "bench_fmnist.yaml"), [])
    assert list(cfg.diffusion.block_channels) == [16, 32, 32] and cfg.diffusion.prediction_type == "v_prediction"
    assert cfg.eval.model == "resnet_fast28" and cfg.eval.augment == "auto" and cfg.eval.steps is None  # converged


def test_flop_count_of_a_linear_layer_is_two_per_multiply_add_forward_and_backward():
    import torch

    bs = load("bench_speed")
    layer = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    assert bs._flops(lambda: layer(x)) == 2 * 8 * 64 * 32
    assert bs._flops(lambda: layer(x).sum().backward()) == 3 * 2 * 8 * 64 * 32  # + grad wrt input and weight


def test_datasheet_peak_matches_the_right_h100_variant():
    bs = load("bench_speed")
    assert bs.datasheet_peak("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bs.datasheet_peak("NVIDIA H100 PCIe") == 756.5e12
    assert bs.datasheet_peak("NVIDIA H200") == 989.4e12
    assert bs.datasheet_peak("Some Future GPU") is None


def test_speed_table_gives_model_flops_and_utilisation_against_the_cpu_ceiling(monkeypatch):
    bs = load("bench_speed")
    monkeypatch.setattr(bs.torch.cuda, "is_available", lambda: False)
    run = {"img_s": 100.0, "flops_per_img": 2e8, "peak_mb": 800, "memory": "process RSS", "host_reads": 0}
    results = {"classifier_train_genaug": [run, {**run, "img_s": 120.0}, {**run, "img_s": 80.0, "host_reads": 2}],
               "classifier_train_plain": [{**run, "img_s": 50.0}], "matmul_ceiling": [{"flop_s": 1e11, "peak_mb": 600}]}
    args = argparse.Namespace(repeats=3, steps=10, batch_size=32, samples=8, precision="no", channels_last=False,
                              compile=False, peak_tflops=None)
    text = bs.table(results, args)
    row = next(line for line in text.splitlines() if line.startswith("| classifier training"))
    assert "100.0 (80.0-120.0), 800 MB" in row and "2.00x" in row and row.endswith("20.0 GFLOP/s = 20.0% | 0/2 |")
    assert "measured matmul ceiling (a 2048^2 fp32 matmul reaches 100.0 GFLOP/s here" in text
    assert "--precision no`" in text  # every case ran: the command names none
    args.cases = ["classifier_train_genaug", "classifier_train_plain", "matmul_ceiling"]
    assert "--precision no --cases classifier_train_genaug classifier_train_plain matmul_ceiling`" in bs.table(results, args)
    assert "| GAN training" not in text  # rows of cases that did not run are left out


def test_speed_table_gives_evaluation_runs_per_minute_batched_vs_one_at_a_time(monkeypatch):
    bs = load("bench_speed")
    monkeypatch.setattr(bs.torch.cuda, "is_available", lambda: False)
    one = {"runs_min": 2.0, "img_s": 300.0, "peak_mb": 900, "memory": "process RSS", "workers": 1}
    results = {"eval_runs_one_at_a_time": [one, {**one, "runs_min": 2.2}],
               "eval_runs_batched": [{**one, "runs_min": 3.5, "workers": 2}, {**one, "runs_min": 3.1, "workers": 2}]}
    args = argparse.Namespace(repeats=2, steps=10, batch_size=32, samples=8, precision="no", channels_last=False,
                              compile=False, peak_tflops=None, eval_runs=6, eval_steps=300,
                              cases=["eval_runs_one_at_a_time", "eval_runs_batched"])
    text = bs.table(results, args)
    assert "--eval-runs 6 --eval-steps 300" in text and "| evaluation runs" not in text  # its own table
    assert "| 2.10 (2.00-2.20) | 3.30 (3.10-3.50) (2 processes) | 1.57x |" in text


def test_each_speed_option_set_writes_its_own_section(monkeypatch):
    bs = load("bench_speed")
    opts = dict(repeats=1, steps=1, batch_size=8, samples=4, peak_tflops=None)
    plain = argparse.Namespace(precision="no", channels_last=False, compile=False, **opts)
    fast = argparse.Namespace(precision="bf16", channels_last=True, compile=True, **opts)
    monkeypatch.setattr(bs.torch.cuda, "is_available", lambda: True)
    assert bs.marker(plain) == "bench_speed_gpu" and bs.marker(fast) == "bench_speed_gpu_bf16_channels-last_compile"
    monkeypatch.setattr(bs.torch.cuda, "is_available", lambda: False)
    assert bs.marker(plain) == "bench_speed_cpu"
    plain.cases = ["eval_runs_one_at_a_time", "eval_runs_batched"]  # alone: their own section
    assert bs.marker(plain) == "bench_speed_cpu_eval-runs_b8"  # one section per batch size


def test_near_copies_flags_copies_of_training_images_and_not_new_real_ones(monkeypatch):
    import torch

    import genaug.evaluate.data as eval_data

    bq = load("bench_quality")
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (50, 1, 8, 8), generator=g, dtype=torch.uint8)
    val = torch.randint(0, 256, (200, 1, 8, 8), generator=g, dtype=torch.uint8)
    fresh = torch.randint(0, 256, (200, 1, 8, 8), generator=g, dtype=torch.uint8)

    def fake(syn):
        return lambda cfg, need_synthetic: argparse.Namespace(train_x=train, val_x=val, syn_x=syn)

    args = argparse.Namespace(config=bq.CONFIG, runs_dir="runs", set=None)
    monkeypatch.setattr(eval_data, "load_eval_data", fake(train[torch.arange(200) % 50]))
    assert bq.near_copies(args, 10, "x")["share"] == 1.0  # every synthetic image is a training image
    monkeypatch.setattr(eval_data, "load_eval_data", fake(fresh))
    assert 0.02 < bq.near_copies(args, 10, "x")["share"] < 0.25  # new draws from the same source: ~0.1


def test_host_reads_counts_item_and_bool_but_not_optimiser_step_counters():
    import torch

    bench = load("bench_speed")
    x = torch.ones(3)
    assert bench.host_reads(lambda: x.sum().item()) == 1
    assert bench.host_reads(lambda: bool(x.sum() > 0) and float(x[0])) == 2
    assert bench.host_reads(lambda: torch.nonzero(x)) == 1
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters())

    def step():
        model(x).sum().backward()
        opt.step()

    step()
    assert bench.host_reads(step) == 0  # Adam reads its CPU step counters: not syncs on a GPU


def test_generator_training_steps_read_nothing_back_from_the_device():
    bench = load("bench_speed")
    args = argparse.Namespace(batch_size=8, precision="no", steps=1, samples=2, channels_last=False, compile=False)
    assert bench.gan_train_genaug(args)["host_reads"] == 0
    assert bench.diffusion_train_genaug(args)["host_reads"] == 0
    assert bench.classifier_train_genaug(args)["host_reads"] == 0


def test_oracle_cell_and_naive_gain_sign():
    bench = load("bench_quality")
    gain = lambda m, lo, hi: {"mean": m, "lo": lo, "hi": hi, "n": 5}
    metrics = {"oracle": {"settings": [{"mix": 0.1, "gain_acc": gain(0.04, 0.02, 0.06)}],
                          "captured": {"0.1": {"share": 0.25, "why": None}}}}
    assert bench.oracle_cell(metrics, 0.1) == "+0.0400 [+0.0200, +0.0600]; 0.25"
    assert bench.oracle_cell(metrics, 0.3) == "—" and bench.oracle_cell({}, 0.1) == "—"
    assert bench.negated(gain(0.03, 0.01, 0.05)) == gain(-0.03, -0.05, -0.01)


def test_bench_img2img_times_the_tiny_pipeline():
    bench_img2img = load("bench_img2img")

    out = bench_img2img.main(["--images", "2", "--steps", "4", "--repeats", "1", "--batch-size", "2"])
    assert out["images_per_s"] > 0 and out["resolution"] == 32 and out["model"].startswith("tiny")


def test_pool_table_pairs_labeled_only_rows_only_with_the_same_baseline():
    bq = load("bench_quality")
    base = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.55)]
    pool_part = part(base, 700)
    pool_part["metrics"]["pool"] = {"n": 3000, "pool_size": 10000, "threshold": 0.9,
                                    "settings": [setting(0.1, 0.7, 0.53)], "pool_synthetic": [setting(0.1, 0.7, 0.54)],
                                    "synthetic_over_pool": {"0.1": ci(0.01)}}
    pool_part["metrics"]["oracle"] = {"n": 700, "settings": [setting(0.1, 0.7, 0.6)]}
    pool_part["near_copies"] = {"share": 0.05}
    pooled = {"k": 10, "generator": "gan", "pool": "rest", "pool_max": 10000, "budget": "DCGAN", "command": "c",
              "device": "CPU", "date": "d", "filtered": pool_part,
              "pseudo_labels": {"n": 10000, "accuracy": 0.7, "confident": 3000, "confident_accuracy": 0.93,
                                "threshold": 0.9, "judge_val_accuracy": 0.72}}
    same = {"k": 10, "generator": "gan", "filtered": part(base, 800), "unfiltered": part(base, 1000)}
    other = {"k": 10, "generator": "diffusion", "filtered": part([setting(0.0, 0.6, 0.49), setting(0.1, 0.7, 0.5)], 900),
             "unfiltered": part([setting(0.0, 0.6, 0.49)], 900)}
    text = "\n".join(bq.pool_table([pooled], [same, other]))
    assert "+ GAN trained on the labeled split only, mix 0.1" in text  # its baseline runs equal the pool run's
    assert "DIFFUSION trained on the labeled split only" not in text  # another baseline: not paired, left out
    assert "+ pseudo-labeled pool (no generator), mix 0.1 | 3000 |" in text and "on top of the pool alone: +0.0100" in text
    assert "oracle (held-out real, true labels), mix 0.1" in text and "3,000 at confidence >= 0.9, of which 0.93" in text


def test_prior_table_shows_both_starts_with_cas_and_one_baseline_when_they_agree():
    bp = load("bench_prior")
    base = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.52), setting(1.0, 0.4, 0.3)]
    metrics = lambda: {"settings": base, "seeds": [0, 1], "real": {"train": 100, "test": 1000}, "synthetic": {"n": 500},
                       "model": "resnet_fast28", "steps": 300, "batch_size": 32,
                       "oracle": {"n": 500, "settings": [setting(0.1, 0.7, 0.56)]}}
    run = lambda: {"metrics": metrics(), "fidelity": {"judge": {"fid": 2.5, "kid": 0.01}}, "near_copies": {"share": 0.2}}
    text = bp.table({"command": "python scripts/bench_prior.py", "device": "CPU", "date": "d", "pretrain_steps": 1500,
                     "pretrain_seconds": 600, "runs": {"prior_scratch": run(), "prior_finetuned": run()}})
    assert text.count("| strong real-only (baseline) |") == 1
    assert "+ UNet fine-tuned from the Fashion-MNIST prior, CAS (synthetic only)" in text
    assert "+ UNet from scratch, mix 0.1 | 500 |" in text and "oracle (held-out real digits), mix 0.1" in text


def test_table_only_backfills_the_oracle_and_naive_rows_from_the_runs_metrics(tmp_path):
    import json

    bq = load("bench_quality")
    settings = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.55)]
    results = [{"k": 10, "generator": "gan", "filtered": part(settings, 800), "unfiltered": part(settings, 1000)}]
    for name, run in bq.run_names(10, "gan").items():
        results[0][name]["near_copies"] = {"share": 0.05}
        (tmp_path / run / "eval").mkdir(parents=True)
        extra = {"oracle": {"n": 800, "settings": [setting(0.1, 0.7, 0.6)], "captured": {"0.1": {"share": 0.5}}}}
        (tmp_path / run / "eval" / "metrics.json").write_text(json.dumps({"settings": settings, **extra}))
    args = argparse.Namespace(runs_dir=str(tmp_path))
    assert bq.fill_near_copies(args, results) and results[0]["filtered"]["metrics"]["oracle"]["n"] == 800
    assert not bq.fill_near_copies(args, results)  # nothing left to fill


def test_default_data_setting_keeps_the_configs_split_and_sorts_after_the_ks():
    bq = load("bench_quality")
    assert bq.split_sets(bq.DEFAULT) == [] and bq.split_sets(10) == ["data.real_per_class=10"]
    assert bq.run_names(bq.DEFAULT, "gan", pool=True) == {"filtered": "default_gan_pool"}
    args = argparse.Namespace(config=None, runs_dir="r", set=None)
    cfg = bq._cfg(args, bq.DEFAULT, "default_gan_pool")
    assert cfg.data.source == "mnist5k" and cfg.data.real_per_class is None and cfg.data.imbalance == 0.05
    merged = bq.merge([{"k": bq.DEFAULT, "generator": "gan"}], [{"k": 50, "generator": "gan"}, {"k": 10, "generator": "gan"}])
    assert [r["k"] for r in merged] == [10, 50, bq.DEFAULT]
    cmd = bq.command(argparse.Namespace(data=bq.DEFAULT, per_class=[bq.DEFAULT], generators=["gan"], seeds=3,
                                        config=None, pool="rest", pool_max=None, set=["pool.labeler=fixmatch"]))
    assert cmd == "python scripts/bench_quality.py --data default --generators gan --seeds 3 --pool rest " \
                  "--set pool.labeler=fixmatch"


def test_pool_only_table_names_command_device_date_and_the_default_block():
    bq = load("bench_quality")
    base = [setting(0.0, 0.6, 0.5), setting(0.1, 0.7, 0.55)]
    labels = {"n": 2000, "accuracy": 0.9, "confident": 1500, "confident_accuracy": 0.99, "threshold": 0.95,
              "judge_val_accuracy": 0.9}
    rows = []
    for k, seconds in ((50, 5400.0), (bq.DEFAULT, 1800.0)):
        p = part(base, 700)
        p["metrics"]["real"]["test"] = 1000
        rows.append({"k": k, "generator": "gan", "pool": "rest", "pool_max": None, "budget": "DCGAN", "seconds": seconds,
                     "command": f"cmd {k}", "device": "CPU (x)", "date": "2026-12-06", "filtered": p,
                     "pseudo_labels": labels})
    text = bq.table(rows, argparse.Namespace(seed=0))
    assert "- `cmd 50` on CPU (x), 2026-12-06" in text and "- `cmd default` on CPU (x), 2026-12-06" in text
    assert "fm_k50 gan 90 min, default gan 30 min" in text
    assert text.index("**K = 50 real images per class + unlabeled pool**") < text.index("**The default data (MNIST-5k")
    assert "test: official 10k" in text and "test: 1,000 images" in text


def test_a_setting_reuses_what_its_sibling_runs_hold(tmp_path):
    """The second generator of a K names the first's run as genaug's paths.reuse_from
    (genaug copies what has its keys); the unfiltered set names the filtered run; runs
    without a pool never name a pool run, and a run not started yet is not named."""
    bq = load("bench_quality")
    args = argparse.Namespace(runs_dir=str(tmp_path))
    assert bq.reuse_from(args, 10, "fm_k10_gan_pool", pool=True) == []
    (tmp_path / "fm_k10_gan_pool").mkdir()
    assert bq.reuse_from(args, 10, "fm_k10_diffusion_pool", pool=True) == ["fm_k10_gan_pool"]
    assert bq.reuse_args(["fm_k10_gan_pool"]) == ["--set", "paths.reuse_from=[fm_k10_gan_pool]"]
    assert bq.reuse_args([]) == []
    assert bq.reuse_from(args, 10, "fm_k10_gan", pool=False) == []  # labeled-only runs: not the pool's
    (tmp_path / "fm_k10_gan").mkdir()
    (tmp_path / "fm_k10_diffusion").mkdir()
    assert bq.reuse_from(args, 10, "fm_k10_gan_unfiltered", pool=False) == ["fm_k10_gan", "fm_k10_diffusion"]


def test_the_keys_that_license_sharing_do_not_depend_on_the_generator_or_run():
    from genaug.config import load_config
    from genaug.evaluate.learner import learner_key
    from genaug.evaluate.run import arm_key
    from genaug.judge import judge_key
    from genaug.classify.streams import Arm

    cfgs = [load_config(str(SCRIPTS.parent / "configs" / "bench_fmnist.yaml"),
                        [f"run={run}", f"sample.generator={gen}", "data.unlabeled=rest", "pool.labeler=fixmatch"])
            for run, gen in (("fm_k10_gan_pool", "gan"), ("fm_k10_diffusion_pool", "diffusion"))]
    strong = Arm("strong", "strong", "", "balanced", "randaugment")
    for key in (judge_key, learner_key, lambda c: arm_key(c, strong)):
        assert key(cfgs[0]) == key(cfgs[1])

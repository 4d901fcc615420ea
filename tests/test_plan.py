"""Fingerprint -> plan (issue 30): the rules over a few folder shapes, the user's values
winning over the plan's, the defaults kept on the built-in data, one-line refusals."""

from __future__ import annotations

import json

import pytest

from conftest import make_imagefolder, write_image
from genaug.errors import DataError
from genaug.plan import apply_plan, dcgan_size_at_most, fingerprint, make_plan


def plan_of(tmp_path, source, *sets, device=None):
    overrides = [f"data.source={source}", f"paths.runs_dir={tmp_path / 'runs'}", *sets]
    if device is None:
        return apply_plan(None, overrides)
    from genaug.config import resolve_config

    cfg, _ = resolve_config(None, overrides)
    return make_plan(fingerprint(cfg), device)


CPU, GPU = {"kind": "cpu", "name": "test CPU"}, {"kind": "gpu", "name": "test GPU"}
PRETRAINED = {"eval.model": "efficientnet_lite0", "eval.pretrained": True}  # a GPU with the weights at hand


@pytest.mark.parametrize("size,mode,per_class,device,expected", [
    # 16 px grey: the defaults' shape (a DCGAN size under the CPU's 32 px), nothing planned
    ((16, 16), "L", 6, CPU, {}),
    # 64 px RGB on a CPU: trained at 32 px; the generator and classifier stay the 28 px design point's
    ((64, 64), "RGB", 6, CPU, {"data.image_size": 32}),
    # 64 px RGB on a GPU: trained at 64 px, wider generator, the stride-1 classifier
    ((64, 64), "RGB", 6, GPU, {"gan.g_channels": 64, "gan.d_channels": 64, "gan.steps": 3000,
                                "diffusion.block_channels": [64, 128, 128], **PRETRAINED}),
    # 300 x 200 grey photos on a GPU: shorter side 200 -> the largest DCGAN size <= 64
    ((300, 200), "L", 6, GPU, {"data.image_size": 64, "gan.g_channels": 64, "gan.d_channels": 64, "gan.steps": 3000,
                                "diffusion.block_channels": [64, 128, 128], **PRETRAINED}),
    # 30 px is not s0 * 2^k: the nearest DCGAN size below it
    ((30, 30), "L", 6, CPU, {"data.image_size": 28}),
    # 58 training images per class (80 - 16 test - 6 val), none held out: a fifth set aside for the oracle
    ((16, 16), "L", 80, CPU, {"data.hold_out": 0.2}),
])
def test_the_rules_over_folder_shapes(tmp_path, monkeypatch, size, mode, per_class, device, expected):
    monkeypatch.setattr("genaug.plan.pretrained_available", lambda variant=0: True)
    folder = make_imagefolder(tmp_path / "f", per_class=per_class, size=size, mode=mode)
    plan = plan_of(tmp_path, folder, device=device)
    values = {k: v["value"] for k, v in plan.items()}
    assert values == expected
    assert all(v["why"] for v in plan.values())


def test_a_gpu_without_pretrained_weights_plans_the_scratch_resnet(tmp_path, monkeypatch):
    monkeypatch.setattr("genaug.plan.pretrained_available", lambda variant=0: False)
    folder = make_imagefolder(tmp_path / "f", size=(64, 64), mode="RGB")
    assert plan_of(tmp_path, folder, device=GPU)["eval.model"]["value"] == "resnet_medium32"


def test_the_fingerprint_reads_sizes_channels_counts_and_near_duplicates(tmp_path):
    folder = make_imagefolder(tmp_path / "f", classes=("a", "b", "c"), per_class=8, size=(40, 24), mode="RGB")
    for i in range(3):  # three copies of one image in class a (the same seed: identical pixels)
        write_image(folder / "a" / f"copy{i}.png", size=(40, 24), mode="RGB", seed=7)
    from genaug.config import resolve_config

    cfg, _ = resolve_config(None, [f"data.source={folder}", f"paths.runs_dir={tmp_path / 'runs'}"])
    fp = fingerprint(cfg)
    assert fp["channels"] == 3 and fp["colour_share"] == 1.0
    assert fp["sizes"] == {"files": 27, "short_min": 24, "short_median": 24, "short_max": 24, "long_max": 40,
                           "square": False}
    assert fp["loaded_size"] == 24 and len(fp["classes"]) == 3
    assert sum(fp["train_counts"]) == fp["splits"]["train"]
    assert fp["near_duplicates"] > 0  # the copies that landed in the training split have a twin there
    assert json.loads((tmp_path / "runs" / "default" / "fingerprint.json").read_text())["key"] == fp["key"]
    assert dcgan_size_at_most(24) == 24 and dcgan_size_at_most(63) == 56


def test_the_users_values_win_and_the_plan_says_whose_they_are(tmp_path):
    folder = make_imagefolder(tmp_path / "f", size=(64, 64), mode="RGB")
    plan = plan_of(tmp_path, folder, "data.image_size=48")
    assert plan.cfg.data.image_size == 48 and plan.values["data.image_size"] == {
        "value": 48, "why": plan.values["data.image_size"]["why"], "from": "--set"}
    assert plan.origins["data.image_size"] == "--set"


def test_the_builtin_default_data_keeps_the_defaults(tmp_path):
    """MNIST-5k (28 px grey, the point the defaults were tuned at): no rule changes a value."""
    from genaug.config import Config

    plan = plan_of(tmp_path, "mnist5k", "data.imbalance=0.05")
    assert plan.values == {}
    default = Config()
    assert plan.cfg.model_dump(exclude={"paths"}) == default.model_dump(exclude={"paths"})


def test_data_the_plan_cannot_serve_is_refused_with_one_line(tmp_path, run_cli):
    one = tmp_path / "one"
    write_image(one / "a" / "0.png")
    write_image(one / "b" / "0.png")
    write_image(one / "b" / "1.png")
    write_image(one / "b" / "2.png")
    result = run_cli("plan", "--set", f"data.source={one}", "--set", f"paths.runs_dir={tmp_path / 'runs'}")
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output
    assert "'a'" in result.output or "split is empty" in result.output
    alone = tmp_path / "alone"
    write_image(alone / "a" / "0.png")
    result = run_cli("plan", "--set", f"data.source={alone}", "--set", f"paths.runs_dir={tmp_path / 'runs'}")
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output


def test_genaug_plan_prints_the_plan_and_an_estimate_and_dry_run_marks_planned_values(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv("GENAUG_NO_ESTIMATE")
    folder = make_imagefolder(tmp_path / "f", size=(64, 64), mode="RGB", per_class=10)
    args = ["--set", f"data.source={folder}", "--set", f"paths.runs_dir={tmp_path / 'runs'}", "--set", "gan.steps=20",
            "--set", "judge.steps=10", "--set", "eval.steps=10", "--set", "sample.per_class=5"]
    result = run_cli("plan", *args)
    assert result.exit_code == 0, result.output
    assert "data.image_size" in result.output and "rule:" in result.output and "gan.steps" not in result.output
    assert "estimated time on this device: train" in result.output
    saved = json.loads((tmp_path / "runs" / "default" / "plan.json").read_text())
    assert saved["values"]["data.image_size"]["value"] == 32 and saved["estimate_seconds"]["train"] > 0
    assert set(saved["estimate_seconds"]) == {"train", "sample", "eval", "report"}
    dry = run_cli("train-gan", "--dry-run", *args)
    assert "image_size: 32  # plan" in dry.output, dry.output


def test_the_report_shows_the_plan_and_the_estimate_beside_the_measured_times(tmp_path):
    from genaug.report import Doc, _plan

    fp = {"source": "f", "classes": ["a", "b"], "channels": 3, "colour_share": 1.0, "train_counts": [5, 9],
          "imbalance": 1.8, "splits": {"train": 14, "val": 4, "test": 4}, "held_out": 0, "pool": 0,
          "near_duplicates": 0.0, "sizes": {"files": 22, "short_min": 64, "short_median": 64, "short_max": 64,
                                            "long_max": 64, "square": True}}
    plan = {"fingerprint": fp, "device": {"kind": "cpu", "name": "test CPU"},
            "values": {"data.image_size": {"value": 32, "why": "files are 64 px", "from": "rule"}},
            "estimate_seconds": {"train": 100.0, "sample": 5.0}}
    doc = Doc(tmp_path / "assets")
    _plan(doc, plan, {"train": {"seconds": 130.0}})
    md = doc.markdown("t")
    assert "## Plan" in md and "data.image_size" in md and "files are 64 px" in md
    assert "| train | 100 | 130 |" in md and "| sample | 5 | — |" in md


def test_the_planned_hold_out_feeds_the_oracle_and_leaves_val_and_test_alone(tmp_path):
    from genaug.config import resolve_config
    from genaug.data import load_data

    folder = make_imagefolder(tmp_path / "f", per_class=80)
    plan = plan_of(tmp_path, folder)
    assert plan.cfg.data.hold_out == 0.2 and plan.values["data.hold_out"]["from"] == "rule"
    planned = load_data(plan.cfg.data)
    whole = load_data(resolve_config(None, [f"data.source={folder}"])[0].data)
    assert planned.held_out.counts(2) == [12, 12] and planned.splits["train"].counts(2) == [46, 46]
    assert set(planned.held_out.ids) | set(planned.splits["train"].ids) == set(whole.splits["train"].ids)
    for name in ("val", "test"):
        assert planned.splits[name].ids == whole.splits[name].ids
    assert plan_of(tmp_path, folder, "data.hold_out=0").cfg.data.hold_out == 0.0  # the user may refuse it


def test_estimate_counts_fixmatch_rows_and_the_dpt_learner_as_timed_fixmatch_steps(monkeypatch):
    """With a pool: every FixMatch row (and + synthetic at each share) takes its cap of
    FixMatch steps, timed on a (1 + 2 mu) B batch; pool.labeler=fixmatch adds the learner's
    run to train. The timed steps are replaced by fixed costs to check the arithmetic."""
    import genaug.plan as plan
    from genaug.classify.budget import row_budget
    from genaug.config import load_config

    monkeypatch.setattr(plan, "_process_age", lambda: 0.0)
    monkeypatch.setattr(plan, "_time_steps", lambda step, n=6: 0.01)
    fp = {"sizes": {"short_median": 16}, "channels": 1, "classes": list("ab"), "train_counts": [40, 40],
          "held_out": 500, "pool": 500}
    sets = ["data.image_size=16", "eval.seeds=2", "eval.mix=0.5", "eval.max_steps=700", "eval.min_steps=700"]
    plain, semi, dpt = (plan.estimate(load_config(None, [*sets, *extra]), fp) for extra in
                        (["eval.fixmatch=false"], [], ["pool.labeler=fixmatch"]))
    cap = row_budget(load_config(None, sets).eval, 80 + 500, semi_supervised=True).cap
    assert cap == 700
    assert semi["eval"] - plain["eval"] == pytest.approx(2 * (1 + 1) * cap * 0.01)  # seeds x (FixMatch, + synthetic)
    assert dpt["train"] - semi["train"] == pytest.approx(cap * 0.01) and semi["train"] == plain["train"]

"""The honest answer by default (issue 18): naive / strong / synthetic / oracle rows,
external synthetic folders, the config merge rule, one-image classes, log-friendly progress."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.config import Config, annotated_yaml, load_config, resolve_config
from genaug.data import load_data
from genaug.errors import GenaugError
from genaug.evaluate import run as eval_run
from genaug.evaluate.data import load_eval_data
from genaug.evaluate.run import captured_share
from genaug.progress import PlainProgress

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def cfg_for(tmp_path, *extra):
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen",
                               "eval.model=resnet_small28", "eval.steps=10", "eval.eval_every=5", "eval.seeds=2",
                               "eval.batch_size=16", *extra])


# --- config: built-in default -> file -> --set, key by key -----------------------------

def test_set_changes_only_its_key_over_a_config_file(tmp_path):
    f = tmp_path / "my.yaml"
    f.write_text("run: mine\ngan:\n  steps: 100\n")
    a, b = load_config(f).model_dump(), load_config(f, ["eval.seeds=7"]).model_dump()
    assert b["eval"].pop("seeds") == 7 and a["eval"].pop("seeds") == Config().eval.seeds
    assert a == b
    assert a["eval"]["model"] == Config().eval.model and a["gan"]["steps"] == 100  # the file's sections start from the default


def test_dry_run_names_where_each_non_default_value_came_from(tmp_path, run_cli):
    f = tmp_path / "my.yaml"
    f.write_text("run: mine\ngan:\n  steps: 100\n")
    plain = run_cli("train-gan", "--config", str(f), "--dry-run").output.splitlines()
    seeds = run_cli("train-gan", "--config", str(f), "--set", "eval.seeds=9", "--dry-run").output.splitlines()
    diff = [(x, y) for x, y in zip(plain, seeds) if x != y]
    assert len(plain) == len(seeds) and diff == [("  seeds: 3", "  seeds: 9  # --set")]
    assert "run: mine  # file" in plain and "  steps: 100  # file" in plain
    cfg, origins = resolve_config(f, ["eval.seeds=9"])
    import yaml

    assert Config.model_validate(yaml.safe_load(annotated_yaml(cfg, origins))) == cfg  # still a valid config


def test_another_data_source_does_not_inherit_the_default_long_tail(tmp_path):
    cfg = load_config(None, ["data.source=fashion-mnist"])
    assert cfg.data.imbalance is None and load_config().data.imbalance == 0.05


# --- rows: naive, strong, + synthetic, oracle ------------------------------------------

def test_oracle_uses_held_out_training_images_only_and_records_them(tmp_path):
    cfg = cfg_for(tmp_path)
    data = load_data(cfg.data)
    held = set(data.held_out.ids)
    assert held and not held & set(data.splits["train"].ids)
    assert not held & (set(data.splits["val"].ids) | set(data.splits["test"].ids))
    export = tmp_path / "as_synthetic"
    from genaug.data.tools import export_imagefolder

    export_imagefolder(data, export, "train")
    cfg = cfg_for(tmp_path, f"eval.synthetic_dir={export}", "eval.mix=0.5")
    metrics = eval_run.evaluate(cfg)
    assert [s["arm"] for s in metrics["settings"]] == ["strong", "synthetic"]
    assert metrics["baselines"]["naive"]["arm"] == "naive" and metrics["synthetic"]["external"]
    assert metrics["oracle"]["per_class"] == metrics["synthetic"]["per_class"]  # 20 per class: enough held out
    splits = json.loads((cfg.run_dir() / "splits.json").read_text())
    assert set(splits["oracle"]["ids"]) <= held and len(splits["oracle"]["ids"]) == metrics["oracle"]["n"]
    text = eval_run.results_table(metrics)
    for row in ("naive real-only", "strong real-only", "+ synthetic", "oracle (held-out real)", "strong - naive"):
        assert row in text


def test_real_only_rows_are_reused_across_synthetic_sets(tmp_path, monkeypatch):
    data = load_data(cfg_for(tmp_path).data)
    from genaug.data.tools import export_imagefolder

    export_imagefolder(data, tmp_path / "a", "train")
    eval_run.evaluate(cfg_for(tmp_path, f"eval.synthetic_dir={tmp_path / 'a'}", "eval.oracle=false"))
    # the same folder with one image changed: new content hash, so only the synthetic rows run again
    first = sorted((tmp_path / "a" / data.classes[0]).iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(first))).save(first)
    trained = []
    real = eval_run.train_once
    monkeypatch.setattr(eval_run, "train_once", lambda *a, arm, **k: trained.append(arm.name) or real(*a, arm=arm, **k))
    eval_run.evaluate(cfg_for(tmp_path, f"eval.synthetic_dir={tmp_path / 'a'}", "eval.oracle=false"))
    assert trained == ["synthetic", "synthetic"]


def test_a_run_borrows_from_paths_reuse_from_only_the_rows_with_its_keys(tmp_path, monkeypatch):
    """Two runs of one split whose synthetic sets differ by one image: the second copies
    the first's real-only rows (and the baseline's saved weights) and trains only its
    own synthetic rows; its real-only results are the first run's."""
    data = load_data(cfg_for(tmp_path).data)
    from genaug.data.tools import export_imagefolder
    from genaug.io import read_jsonl

    export_imagefolder(data, tmp_path / "a", "train")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = sorted((tmp_path / "b" / data.classes[0]).iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(first))).save(first)
    lender = eval_run.evaluate(cfg_for(tmp_path, "run=a", f"eval.synthetic_dir={tmp_path / 'a'}", "eval.oracle=false"))
    trained = []
    real = eval_run.train_once
    monkeypatch.setattr(eval_run, "train_once", lambda *a, arm, **k: trained.append(arm.name) or real(*a, arm=arm, **k))
    cfg = cfg_for(tmp_path, "run=b", f"eval.synthetic_dir={tmp_path / 'b'}", "eval.oracle=false",
                  "paths.reuse_from=[a]")
    borrower = eval_run.evaluate(cfg)
    assert trained == ["synthetic", "synthetic"]
    out = cfg.run_dir() / "eval"
    rows = read_jsonl(out / "rows.jsonl")
    assert sorted(r["arm"] for r in rows).count("strong") >= 2
    assert {r["arm"] for r in rows if r.get("lent_by") == "a"} == {"naive", "strong"}
    assert all("lent_by" not in r for r in rows if r["arm"] == "synthetic")
    assert (out / "models" / "strong_r0_seed0.safetensors").read_bytes() == \
        (tmp_path / "runs" / "a" / "eval" / "models" / "strong_r0_seed0.safetensors").read_bytes()
    assert borrower["settings"][0] == lender["settings"][0]  # the baseline row: the same runs


def test_reuse_cached_copies_a_matching_result_and_refuses_a_missing_run(tmp_path, capsys):
    from genaug.errors import ConfigError
    from genaug.runs import reuse_cached

    cfg = cfg_for(tmp_path, "run=mine", "paths.reuse_from=[other]")
    other = tmp_path / "runs" / "other" / "judge"
    other.mkdir(parents=True)
    (other / "judge.json").write_text('{"key": "k1", "val_accuracy": 0.5}')
    assert not reuse_cached(cfg, "judge/judge.json", {"key": "k1"}, also=["judge/model.safetensors"])  # no weights
    (other / "model.safetensors").write_bytes(b"w")
    assert not reuse_cached(cfg, "judge/judge.json", {"key": "k2"}, also=["judge/model.safetensors"])  # other key
    assert not (cfg.run_dir() / "judge").exists()
    assert reuse_cached(cfg, "judge/judge.json", {"key": "k1"}, also=["judge/model.safetensors"])
    assert (cfg.run_dir() / "judge" / "model.safetensors").read_bytes() == b"w"
    assert "reused judge/judge.json from run other" in capsys.readouterr().out
    (cfg.run_dir() / "judge" / "judge.json").write_text('{"key": "mine"}')
    assert reuse_cached(cfg, "judge/judge.json", {"key": "mine"})  # its own matching result: kept as is
    assert (cfg.run_dir() / "judge" / "judge.json").read_text() == '{"key": "mine"}'
    assert not reuse_cached(cfg, "judge/judge.json", {"key": "k1", "pool_hash": "p"})  # every entry must match
    with pytest.raises(ConfigError, match="paths.reuse_from names run 'typo'"):
        reuse_cached(cfg_for(tmp_path, "run=mine", "paths.reuse_from=[typo]"), "judge/judge.json", {"key": "x"})


def test_synthetic_folder_must_have_the_data_classes(tmp_path):
    data = load_data(cfg_for(tmp_path).data)
    from genaug.data.tools import export_imagefolder

    export_imagefolder(data, tmp_path / "s", "train")
    shutil.rmtree(tmp_path / "s" / data.classes[3])
    (tmp_path / "s" / "zebra").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "s" / "zebra" / "x.png")
    with pytest.raises(GenaugError, match=r"extra class folders \['zebra'\]; missing class folders \['3'\]"):
        load_eval_data(cfg_for(tmp_path, f"eval.synthetic_dir={tmp_path / 's'}"), need_synthetic=True)


def test_oracle_dir_with_a_test_image_is_refused(tmp_path):
    cfg = cfg_for(tmp_path)
    data = load_data(cfg.data)
    from genaug.data.tools import export_imagefolder

    export_imagefolder(data, tmp_path / "s", "train")
    export_imagefolder(data, tmp_path / "o", "train")
    test_img = data.splits["test"].images[0][..., 0]
    Image.fromarray(test_img).save(tmp_path / "o" / data.classes[int(data.splits["test"].labels[0])] / "leak.png")
    cfg = cfg_for(tmp_path, f"eval.synthetic_dir={tmp_path / 's'}", f"eval.oracle_dir={tmp_path / 'o'}")
    with pytest.raises(GenaugError, match="leak.png is the test image"):
        load_eval_data(cfg, need_synthetic=True)


def test_captured_share_is_na_unless_the_oracle_gains():
    gain = lambda m, lo, hi: {"mean": m, "lo": lo, "hi": hi, "n": 3}
    assert captured_share(gain(0.01, 0.0, 0.02), gain(0.04, 0.02, 0.06))["share"] == pytest.approx(0.25)
    assert captured_share(gain(0.01, 0.0, 0.02), gain(0.04, -0.01, 0.09))["share"] is None


# --- a class with one training image ---------------------------------------------------

def test_one_image_class_turns_realism_off_for_it_not_a_traceback():
    from genaug.config import SampleConfig
    from genaug.data.base import Split
    from genaug.synthetic.scores import build_reference
    from genaug.synthetic.store import decide
    import timm

    import genaug.models  # noqa: F401  (registers resnet_small28 with timm)

    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    train = Split(images, np.array([0, 0, 0, 0, 1]), [str(i) for i in range(5)])
    model = timm.create_model("resnet_small28", num_classes=2, in_chans=1)
    ref = build_reference((model, {"in_chans": 1}), train, 2, k=3)
    assert ref.radius(1, 0.95) is None and ref.realism_off() == [1] and ref.radius(0, 0.95) > 0
    rows = [{"label": 1, "judge_pred": 1, "confidence": 0.9, "feature_distance": 5.0, "nn_distance": 0.5}]
    assert decide(rows, [1.0, None], SampleConfig(per_class=1), filtering=True) == [0]  # class 0: no candidates
    assert rows[0]["kept"] and rows[0]["realism"] is None


# --- progress in a log file ------------------------------------------------------------

def test_progress_to_a_file_writes_a_line_per_tenth_not_per_update():
    buf = io.StringIO()
    bar = PlainProgress(range(1000), desc="train", file=buf, mininterval=0)
    for _ in bar:
        bar.set_postfix(loss="0.1")
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and 10 <= len(lines) <= 13
    assert lines[-1].startswith("train: 100%") and "1000/1000" in lines[-1]

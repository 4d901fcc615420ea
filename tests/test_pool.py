"""The unlabeled pool (issue 19): data.unlabeled as data, pseudo-labels, generators that
learn from it, resumption, and the control rows of eval-classifier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genaug.config import load_config
from genaug.data import load_data
from genaug.errors import DataError
from genaug.io import read_jsonl

from stages import genaug, ok

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
POOL = ["data.unlabeled=rest", "data.unlabeled_max=300"]


def cfg_for(tmp_path, *extra):
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen", *POOL, *extra])


# --- the pool as data ----------------------------------------------------------------------

def test_data_info_shows_labeled_split_and_pool(run_cli):
    res = run_cli("data", "info", "mnist5k", "--set", "data.real_per_class=10", "--set", "data.unlabeled=rest")
    assert res.exit_code == 0, res.output
    assert "splits: train 100, val 400, test 1000" in res.output
    # 3,600 training-pool images, 100 of them labeled: the rest is the pool
    assert "unlabeled pool: 3500 images from rest" in res.output


def test_rest_pool_is_the_left_out_training_images_never_val_or_test():
    data = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10", "data.unlabeled=rest"]).data)
    pool = set(data.unlabeled.ids)
    assert len(pool) == 3500 and (data.unlabeled.labels == -1).all()  # labels dropped
    assert not pool & set(data.splits["train"].ids)
    assert not pool & (set(data.splits["val"].ids) | set(data.splits["test"].ids))
    assert data.membership()["unlabeled"]["ids"] == data.unlabeled.ids  # recorded in splits.json


def test_pool_cap_is_seeded_and_does_not_change_the_labeled_splits():
    base = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10"]).data)
    a = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10", "data.unlabeled=rest", "data.unlabeled_max=50"]).data)
    b = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10", "data.unlabeled=rest", "data.unlabeled_max=50"]).data)
    assert len(a.unlabeled) == 50 and a.unlabeled.ids == b.unlabeled.ids
    for name in ("train", "val", "test"):
        assert a.splits[name].ids == base.splits[name].ids


def _export(data, split: str, out: Path, n: int) -> list[Path]:
    from genaug.data.tools import _png_bytes

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = out / f"{split}_{i}.png"
        p.write_bytes(_png_bytes(data.splits[split].images[i]))
        paths.append(p)
    return paths


def test_folder_pool_any_layout_drops_labeled_images_and_refuses_val(tmp_path, run_cli):
    data = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10"]).data)
    root = tmp_path / "pool"
    _export(data, "train", root / "a" / "deep", 3)  # labeled training images: dropped, counted
    rest = data.held_out
    from genaug.data.tools import _png_bytes

    for i in range(5):
        (root / f"x{i}.png").write_bytes(_png_bytes(rest.images[i]))
    res = run_cli("data", "info", "mnist5k", "--set", "data.real_per_class=10", "--set", f"data.unlabeled={root}")
    assert res.exit_code == 0, res.output
    assert "unlabeled pool: 5 images" in res.output and "8 found, 3 dropped as labeled" in res.output
    _export(data, "val", root / "b", 1)
    res = run_cli("data", "info", "mnist5k", "--set", "data.real_per_class=10", "--set", f"data.unlabeled={root}")
    assert res.exit_code != 0 and "Traceback" not in res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "b/val_0.png is the val image" in line, line


def test_same_source_split_overlapping_val_is_refused():
    with pytest.raises(DataError, match="val image"):
        load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10", "data.unlabeled=mnist5k:train"]).data)


def test_unknown_pool_is_one_line(run_cli):
    res = run_cli("data", "info", "mnist5k", "--set", "data.unlabeled=/no/such/folder")
    assert res.exit_code != 0 and "not 'rest', a built-in SOURCE:SPLIT or a folder" in res.output


def test_rest_without_anything_left_out_is_an_error():
    with pytest.raises(DataError, match="no training-pool images are left out"):
        load_data(load_config(None, ["data.imbalance=null", "data.unlabeled=rest"]).data)


def test_pool_settings_off_keep_the_hashes_of_runs_made_before_them():
    from genaug.io import stable_hash
    from genaug.runs import config_hash

    cfg = load_config(SMOKE)
    dump = cfg.model_dump(mode="json")
    for key in ("unlabeled", "unlabeled_max", "hold_out"):
        dump["data"].pop(key)
    for key in ("self_training", "self_training_threshold", "self_training_weight"):
        dump["judge"].pop(key)
    assert config_hash(cfg, "data", "judge") == stable_hash({"data": dump["data"], "judge": dump["judge"]})
    assert config_hash(load_config(SMOKE, POOL), "data") != config_hash(cfg, "data")


# --- batches and losses ---------------------------------------------------------------------

def _gs(n_labeled=20, n_pool=100, share=0.5):
    from genaug.training import GeneratorSet

    return GeneratorSet(torch.zeros(n_labeled + n_pool, 1, 4, 4, dtype=torch.uint8), torch.zeros(n_labeled + n_pool).long(),
                        torch.ones(n_labeled + n_pool), n_labeled, share)


def test_without_a_pool_batches_are_drawn_exactly_as_before():
    from genaug.training import batch_indices, set_indices

    gs = _gs(n_pool=0, share=0.0)
    for step in range(5):
        assert torch.equal(set_indices(gs, 3, step, 16, 1, 0), batch_indices(3, step, 20, 16, 1, 0))


def test_pool_share_of_each_batch_and_ranks_split_one_global_batch():
    from genaug.training import set_indices

    gs = _gs(share=0.25)
    idx = set_indices(gs, 0, 7, 32, 1, 0)
    assert int((idx >= 20).sum()) == 8 and int((idx < 20).sum()) == 24
    halves = torch.cat([set_indices(gs, 0, 7, 16, 2, 0), set_indices(gs, 0, 7, 16, 2, 1)])
    assert torch.equal(halves, idx)


def test_generator_set_conditions_confident_pool_images_only(tmp_path):
    from genaug.pseudo import PoolLabels
    from genaug.training import generator_set

    cfg = cfg_for(tmp_path, "pool.threshold=0.5")
    data = load_data(cfg.data)
    conf = np.linspace(0, 1, len(data.unlabeled))
    fake = PoolLabels(data.unlabeled.ids, np.arange(len(conf)) % 10, conf)
    import genaug.pseudo

    orig = genaug.pseudo.ensure_pool_labels
    genaug.pseudo.ensure_pool_labels = lambda c, d: fake
    try:
        diffusion = generator_set(cfg, data, null=10)
        gan = generator_set(cfg, data, null=None)
    finally:
        genaug.pseudo.ensure_pool_labels = orig
    n = len(data.splits["train"])
    confident = int((conf >= 0.5).sum())
    assert diffusion.n_pool == len(conf) and int((diffusion.labels[n:] == 10).sum()) == len(conf) - confident
    assert gan.n_pool == confident and int((gan.labels[n:] == 10).sum()) == 0
    assert torch.equal(gan.labels[n:], torch.from_numpy(fake.labels[conf >= 0.5]))


def test_weighted_diffusion_loss_with_unit_weights_is_the_plain_mean(tmp_path):
    from genaug.data import load_data as load
    from genaug.generators.diffusion_train import _init, _train_step
    from genaug.training import make_accelerator, step_generator

    cfg = load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs"])
    data = load(cfg.data)
    x0 = torch.from_numpy(data.splits["train"].images[:8]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    y = torch.from_numpy(data.splits["train"].labels[:8])
    losses = []
    for w in (None, torch.ones(8)):
        accelerator = make_accelerator(tmp_path / "acc", "no")
        parts = _init(cfg, data, accelerator)
        g = step_generator(0, 0, 0, torch.device("cpu"), stream=1)
        losses.append(float(_train_step(parts, accelerator, x0, y, g, cfg.diffusion, 10, w)["loss"]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


# --- pseudo-labels, generators, resumption ------------------------------------------------------

def test_train_gan_with_pool_writes_pool_labels_and_pool_fid(tmp_path):
    proc = ok(genaug(tmp_path, "train-gan", sets=[*POOL, "pool.threshold=0.1"]))
    judge = tmp_path / "runs/smoke/judge"
    rows = read_jsonl(judge / "pool_labels.jsonl")
    splits = json.loads((tmp_path / "runs/smoke/splits.json").read_text())
    assert [r["id"] for r in rows] == splits["unlabeled"]["ids"] and len(rows) == 300
    assert all(0 <= r["label"] < 10 and 0 < r["confidence"] <= 1 for r in rows)
    assert set(splits["unlabeled"]["ids"]).isdisjoint(splits["splits"]["val"]["ids"] + splits["splits"]["test"]["ids"])
    evals = [r for r in read_jsonl(tmp_path / "runs/smoke/gan/metrics.jsonl") if "fid" in r]
    assert evals and all(r["fid_pool"] > 0 and r["fid_pool_n_real"] == 300 for r in evals)
    assert "pool: 300 images" in proc.stdout


def _kill_and_resume(tmp_path: Path, command: str, section: str, sets: list[str]) -> None:
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    ok(genaug(ref, command, sets=sets))
    killed = genaug(crash, command, fault="step@8", sets=sets)
    assert killed.returncode != 0
    ok(genaug(crash, command, "--resume", sets=sets))
    from safetensors.torch import load_file

    a = load_file(str(ref / f"runs/smoke/{section}/last/model.safetensors" if section == "gan" else
                      ref / f"runs/smoke/{section}/last/diffusion_pytorch_model.safetensors"))
    b = load_file(str(crash / f"runs/smoke/{section}/last/model.safetensors" if section == "gan" else
                      crash / f"runs/smoke/{section}/last/diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # resumption is exact
    assert (crash / "runs/smoke/judge/pool_labels.jsonl").read_text() == (ref / "runs/smoke/judge/pool_labels.jsonl").read_text()


@pytest.mark.slow  # the suite's time budget; a kill mid-GAN without a pool is tests/test_gan.py's
def test_train_gan_with_pool_killed_then_resumed_equals_uninterrupted(tmp_path):
    _kill_and_resume(tmp_path, "train-gan", "gan", [*POOL, "pool.threshold=0.1"])


def test_train_diffusion_with_pool_conditions_on_confident_labels_and_logs_pool_fid(tmp_path):
    from genaug.generators.diffusion_train import train_diffusion

    cfg = cfg_for(tmp_path, "pool.threshold=0.1", "diffusion.steps=4", "diffusion.eval_every=4",
                  "diffusion.checkpoint_every=4")
    out = train_diffusion(cfg)
    assert len(read_jsonl(tmp_path / "runs/smoke/judge/pool_labels.jsonl")) == 300
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "fid" in r]
    assert evals and evals[-1]["fid_pool"] > 0 and evals[-1]["fid_pool_n_real"] == 300
    assert json.loads((out / "best" / "config.json").read_text())["num_class_embeds"] == 11


@pytest.mark.slow
def test_train_diffusion_with_pool_killed_then_resumed_equals_uninterrupted(tmp_path):
    _kill_and_resume(tmp_path, "train-diffusion", "diffusion", [*POOL, "pool.weight=0.5"])


def test_judge_self_training_keeps_the_best_round_by_val(tmp_path):
    from genaug.judge import train_judge

    cfg = cfg_for(tmp_path, "judge.self_training=2", "judge.self_training_threshold=0.1", "judge.steps=20")
    meta = train_judge(cfg, load_data(cfg.data), tmp_path / "judge")
    st = meta["self_training"]
    assert [r["round"] for r in st["rounds"]] == [1, 2] and st["pool_images"] == 300
    assert meta["val_accuracy"] == max(st["supervised_val_accuracy"], *(r["val_accuracy"] for r in st["rounds"]))
    assert all(0 <= r["confident_share"] <= 1 for r in st["rounds"])


# --- control rows in eval-classifier ------------------------------------------------------------

def test_eval_with_pool_has_pseudo_labeled_pool_and_pool_plus_synthetic_rows(tmp_path):
    sets = [*POOL, "pool.threshold=0.11", "sample.per_class=4"]
    ok(genaug(tmp_path, "train-gan", sets=sets))
    ok(genaug(tmp_path, "sample", sets=sets))
    proc = ok(genaug(tmp_path, "eval-classifier", sets=sets))
    for title in ("+ pseudo-labeled pool", "+ pool + synthetic", "synthetic on top of the pseudo-labeled pool",
                  "+ pool (FixMatch)", "+ FixMatch + synthetic", "synthetic on top of FixMatch"):
        assert title in proc.stdout, proc.stdout
    m = json.loads((tmp_path / "runs/smoke/eval/metrics.json").read_text())
    pool = m["pool"]
    assert set(m["arms"]) >= {"naive", "strong", "synthetic", "pool", "pool_synthetic", "fixmatch", "fixmatch_synthetic"}
    fm = m["fixmatch"]  # every pool image (not only the confident ones) is FixMatch's unlabeled stream
    assert fm["n"] == 300 and [s["mix"] for s in fm["settings"]] == [0.0] and "gain_acc" in fm["settings"][0]
    assert all(0.0 <= c <= 1.0 for c in fm["confident_share"]) and len(fm["confident_share"]) == len(m["seeds"])
    assert [s["mix"] for s in fm["fixmatch_synthetic"]] == [0.5] and set(fm["synthetic_over_fixmatch"]) == {"0.5"}
    by_seed = lambda arm: {r["seed"]: r["test_acc"] for r in m["per_seed"] if r["arm"] == arm}
    fm_alone, fm_syn = by_seed("fixmatch"), by_seed("fixmatch_synthetic")  # the DPT gain is paired by seed
    assert fm["synthetic_over_fixmatch"]["0.5"]["mean"] == pytest.approx(
        np.mean([fm_syn[k] - fm_alone[k] for k in fm_alone]), abs=1e-6)
    assert [s["mix"] for s in pool["settings"]] == [0.5] and [s["mix"] for s in pool["pool_synthetic"]] == [0.5]
    assert pool["n"] <= pool["pool_size"] == 300 and "gain_acc" in pool["settings"][0]
    assert set(pool["synthetic_over_pool"]) == {"0.5"}
    labels = {r["id"]: r for r in read_jsonl(tmp_path / "runs/smoke/judge/pool_labels.jsonl")}
    assert pool["n"] == sum(r["confidence"] >= 0.11 for r in labels.values())


def test_two_source_slots_draw_each_source_about_evenly(tmp_path):
    from genaug.evaluate.data import EvalData
    from genaug.classify.trainer import _batch, _by_class

    x = torch.zeros(40, 1, 4, 4, dtype=torch.uint8)
    y = torch.arange(40) % 2
    ed = EvalData(["a", "b"], 1, 4, x[:4], y[:4], x[:4], y[:4], None, x, y, {"n": 40})
    pools = (_by_class(y, 2, split=30), _by_class(y[:4], 2))  # 30 from the first source, 10 from the second
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    picked = []
    for step in range(200):
        xs, ys, used = _batch(ed, step, 1.0, 8, gens, pools, extra=torch.arange(40).view(40, 1, 1, 1).expand(40, 1, 4, 4).to(torch.uint8))
        picked += xs[:, 0, 0, 0].tolist()
    second = np.mean([p >= 30 for p in picked])
    assert 0.45 < second < 0.55  # evenly by source, not by source size (which would give 0.25)


def test_changed_folder_pool_under_the_same_path_is_relabeled(tmp_path):
    from genaug.data.tools import _png_bytes
    from genaug.pseudo import ensure_pool_labels

    base = load_data(load_config(None, ["data.imbalance=null", "data.real_per_class=10"]).data)
    root = tmp_path / "pool"
    root.mkdir()
    for i in range(6):
        (root / f"{i}.png").write_bytes(_png_bytes(base.held_out.images[i]))
    cfg = load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"data.unlabeled={root}"])
    first = ensure_pool_labels(cfg, load_data(cfg.data))
    (root / "0.png").unlink()
    (root / "9.png").write_bytes(_png_bytes(base.held_out.images[9]))
    data = load_data(cfg.data)
    second = ensure_pool_labels(cfg, data)  # same config, same judge key, other files: labels follow the files
    assert second.ids == data.unlabeled.ids != first.ids


# --- DPT's loop: the FixMatch learner labels the pool and teaches --------------------------------

def test_fixmatch_learner_labels_the_pool_and_is_the_teacher(tmp_path):
    """pool.labeler=fixmatch: the evaluation's FixMatch row (same trainer, seed = seed)
    is trained once, its argmax / max probability are pool_labels.jsonl, and with
    eval.synthetic_labels=teacher it gives the synthetic images' soft labels."""
    from genaug.evaluate.data import EvalData
    from genaug.evaluate.learner import attach_teacher, ensure_learner, learner_config, learner_dir
    from genaug.classify.trainer import predict_proba
    from genaug.pseudo import ensure_pool_labels

    cfg = cfg_for(tmp_path, "pool.labeler=fixmatch", "eval.model=resnet_small28", "eval.steps=12", "eval.eval_every=6",
                  "eval.batch_size=8", "eval.fixmatch_mu=2", "eval.fixmatch_threshold=0.2", "eval.ema=false",
                  "eval.synthetic_labels=teacher")
    data = load_data(cfg.data)
    labels = ensure_pool_labels(cfg, data)
    meta = json.loads((tmp_path / "runs/smoke/judge/pool_labels.json").read_text())
    learner = json.loads((learner_dir(cfg) / "learner.json").read_text())
    assert meta["labeler"]["labeler"] == "FixMatch learner" and meta["key"] == learner["key"]
    assert learner["augment"] == cfg.eval.augment != "auto" and learner["steps"] == 12 and 0 <= learner["pool_confident_share"] <= 1
    model, spec, _ = ensure_learner(cfg, data)  # loaded, not retrained
    probs = predict_proba(model, spec, torch.from_numpy(data.unlabeled.images).permute(0, 3, 1, 2), torch.device("cpu"))
    assert (labels.labels == probs.argmax(1).numpy()).all()
    assert np.allclose(labels.confidence, probs.max(1).values.numpy(), atol=1e-5)
    mtime = (learner_dir(cfg) / "model.safetensors").stat().st_mtime_ns
    assert ensure_pool_labels(cfg, data).ids == labels.ids  # fresh: neither relabeled nor retrained
    assert (learner_dir(cfg) / "model.safetensors").stat().st_mtime_ns == mtime
    x = torch.from_numpy(data.splits["train"].images[:6]).permute(0, 3, 1, 2).contiguous()
    ed = EvalData(data.classes, data.channels, data.image_size, x, torch.zeros(6, dtype=torch.long), x, x, None, x,
                  torch.tensor([0, 1, 2, 3, 4, 5]), {"ids_hash": "x"})
    attach_teacher(cfg, ed)
    assert ed.teacher["model"] == "FixMatch learner" and torch.allclose(ed.syn_teacher, predict_proba(model, spec, x, "cpu"))
    other = cfg_for(tmp_path, "pool.labeler=fixmatch", "eval.model=resnet_small28", "eval.steps=12", "eval.eval_every=6",
                    "eval.batch_size=8", "eval.fixmatch_mu=2", "eval.fixmatch_threshold=0.2", "eval.ema=false",
                    "eval.mix=0.3", "eval.seeds=5")  # row choices: the same learner
    assert json.loads((tmp_path / "runs/smoke/judge/pool_labels.json").read_text())["key"] == \
        ensure_learner(other, data)[2]["key"]
    assert learner_config(cfg_for(tmp_path, "eval.augment=auto")).eval.augment == "shift"  # chosen on val only later


def test_fixmatch_labeler_ties_the_train_stage_to_the_learner_not_to_row_choices(tmp_path):
    from genaug.pipeline import stage_hashes

    train = lambda *extra: stage_hashes(cfg_for(tmp_path, "pool.labeler=fixmatch", *extra))["train"]
    assert train() == train("eval.mix=0.3", "eval.seeds=5")  # which rows run: not the learner
    assert train() != train("eval.fixmatch_threshold=0.9") != stage_hashes(cfg_for(tmp_path))["train"]


def test_an_empty_or_unreadable_pool_folder_is_one_line(tmp_path, run_cli):
    from conftest import write_image

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = run_cli("data", "info", "mnist5k", "--set", f"data.unlabeled={empty}")
    assert result.exit_code != 0 and "holds no image files" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    bad = tmp_path / "bad"
    write_image(bad / "ok.png")
    (bad / "broken.png").write_bytes(b"not a png")
    result = run_cli("data", "info", "mnist5k", "--set", f"data.unlabeled={bad}")
    assert result.exit_code != 0 and "broken.png" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.slow
def test_a_fixmatch_evaluation_killed_mid_row_then_rerun_equals_uninterrupted(tmp_path):
    """The FixMatch rows keep the evaluation's kill/resume guarantee: a run killed between
    two FixMatch steps is rerun from its start, and every row equals the uninterrupted one."""
    from stages import VOLATILE

    sets = [*POOL, "pool.threshold=0.11", "sample.per_class=4", "eval.mix=0.5"]
    first = tmp_path / "a"
    ok(genaug(first, "train-gan", sets=sets))
    ok(genaug(first, "sample", sets=sets))
    second = tmp_path / "b"
    shutil.copytree(first, second)
    ok(genaug(first, "eval-classifier", sets=sets))
    n = len(read_jsonl(first / "runs/smoke/eval/rows.jsonl"))  # 20 steps each; the FixMatch arms run last
    killed = genaug(second, "eval-classifier", fault=f"step@{20 * n - 10}", sets=sets)
    assert killed.returncode != 0
    ok(genaug(second, "eval-classifier", sets=sets))
    rows = lambda base: sorted((json.dumps({k: v for k, v in r.items() if k not in VOLATILE}, sort_keys=True)
                                for r in read_jsonl(base / "runs/smoke/eval/rows.jsonl")))
    assert rows(first) == rows(second)
    assert any('"arm": "fixmatch"' in r for r in rows(second))

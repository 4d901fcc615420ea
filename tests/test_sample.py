"""genaug sample / filter: the gen_dataset contract (SPEC §4)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.config import SampleConfig, load_config
from genaug.errors import GenaugError
from genaug.generators.gan_train import train_gan
from genaug.io import read_jsonl
from genaug.synthetic.sample import run_sample
from genaug.synthetic.store import Store, class_dirs, decide

from conftest import kill_after, make_imagefolder

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
FIELDS = {"id", "path", "label", "class_name", "seed", "generator", "sampler", "confidence", "judge_pred", "realism",
          "feature_distance", "nn_distance", "kept", "reason"}


def cfg_for(base: Path, *extra: str, gen: str = "gen"):
    """The smoke config under ``base``; ``gen`` names this test's own gen_dataset root."""
    return load_config(SMOKE, [f"paths.runs_dir={base}/runs", f"paths.gen_dir={base}/{gen}", *extra])


@pytest.fixture(scope="module")
def smoke_gan(tmp_path_factory) -> Path:
    """A trained smoke GAN (seconds); tests copy nothing, they sample into their own runs."""
    base = tmp_path_factory.mktemp("smoke")
    train_gan(cfg_for(base))
    return base


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def pngs(root: Path, sub: str = "images") -> list[Path]:
    return sorted((root / sub).rglob("*.png"))


def test_sample_writes_exact_counts_and_rerun_changes_nothing(smoke_gan):
    cfg = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=5")
    result = run_sample(cfg)
    gen = cfg.gen_dir()
    rows = read_jsonl(gen / "manifest.jsonl")
    assert len(rows) == 50 == len({r["id"] for r in rows}) and all(FIELDS <= set(r) for r in rows)
    for d in class_dirs([str(i) for i in range(10)]):
        assert len(list((gen / "images" / d).glob("*.png"))) == 5
    assert all((gen / r["path"]).is_file() and r["kept"] for r in rows)
    fid = json.loads((gen / "fidelity.json").read_text())
    assert fid["classes"]["3"]["after"]["n"] == 5 and fid["classes"]["3"]["n_real"] == 20
    assert result["run"]["generated"] == 50

    before = snapshot(gen)
    again = run_sample(cfg)
    assert again["run"] == {"generated": 0, "repaired": 0} and snapshot(gen) == before

    victims = pngs(gen)[::10][:5]
    for v in victims:
        v.unlink()
    restored = run_sample(cfg)
    assert restored["run"] == {"generated": 0, "repaired": 5}
    after = snapshot(gen)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}  # same bytes, same files


def test_filter_keeps_only_passing_images_and_caps_tries(smoke_gan):
    """The 6-step smoke GAN draws junk: the judge rejects most of it; no class gets
    more candidates than per_class * max_tries, and a class is kept whole or not at all."""
    cfg = cfg_for(smoke_gan, "sample.per_class=2", "sample.max_tries=3", "sample.min_confidence=0.2", gen="filtered")
    result = run_sample(cfg)
    rows = read_jsonl(cfg.gen_dir() / "manifest.jsonl")
    for label in range(10):
        mine = [r for r in rows if r["label"] == label]
        assert 2 <= len(mine) <= 6
        assert sum(r["kept"] for r in mine) in (0, 2)
    for r in rows:
        if r["kept"]:
            assert r["judge_pred"] == r["label"] and r["confidence"] >= 0.2 and r["realism"] >= 1
        else:
            assert r["reason"] in ("judge_disagrees", "low_confidence", "unrealistic", "class_short", "surplus")
    assert len(pngs(cfg.gen_dir())) == sum(r["kept"] for r in rows) == result["kept"]
    assert len(pngs(cfg.gen_dir(), "rejected")) == len(rows) - result["kept"]


def test_sample_reports_conditioning_per_class_and_why_a_class_is_empty(smoke_gan):
    """Issue 28: the 6-step smoke GAN draws junk: most classes cannot be filled, and the summary
    says which and why, from the unfiltered candidates' conditioning accuracy."""
    from genaug.synthetic.sample import summarise_fidelity, unfilled

    cfg = cfg_for(smoke_gan, "sample.per_class=2", "sample.max_tries=3", "sample.min_confidence=0.2", gen="conditioning")
    result = run_sample(cfg)
    rows = read_jsonl(cfg.gen_dir() / "manifest.jsonl")
    for label, (name, e) in enumerate(result["classes"].items()):
        mine = [r for r in rows if r["label"] == label]
        assert e["cond_acc"] == pytest.approx(np.mean([r["judge_pred"] == label for r in mine]), abs=1e-4)
    empty = [name for name, e in result["classes"].items() if not e["kept"]]
    assert result["unfilled"] == empty and empty, "the smoke GAN should leave classes empty"
    assert len(unfilled(result)) == len(empty) and all(line.split(":")[0] in empty for line in unfilled(result))
    text = summarise_fidelity(result)
    assert f"{len(empty)} class(es) got no synthetic image" in text and "cond" in text
    assert json.loads((cfg.gen_dir() / "fidelity.json").read_text())["min_class_cond_acc"] == min(
        e["cond_acc"] for e in result["classes"].values())


def test_filter_command_redecides_without_generating(smoke_gan, run_cli):
    cfg = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=3", gen="refilter")
    run_sample(cfg)
    gen = cfg.gen_dir()
    lines = (gen / "manifest.jsonl").read_text().count("\n")
    base = ["--config", str(SMOKE), "--set", f"paths.runs_dir={smoke_gan}/runs",
            "--set", f"paths.gen_dir={smoke_gan}/refilter", "--set", "sample.per_class=3"]
    strict = run_cli("filter", *base, "--min-confidence", "0.99")
    assert strict.exit_code == 0, strict.output
    kept = [r for r in read_jsonl(gen / "manifest.jsonl") if r["kept"]]
    assert len(kept) < 30 and len(pngs(gen)) == len(kept) and len(pngs(gen, "rejected")) == 30 - len(kept)
    loose = run_cli("filter", *base, "--set", "sample.filter=false")
    assert loose.exit_code == 0, loose.output
    assert len(pngs(gen)) == 30 and not pngs(gen, "rejected")
    assert (gen / "manifest.jsonl").read_text().count("\n") == lines  # nothing generated


def test_max_class_fid_gates_classes(smoke_gan):
    cfg = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=2", "sample.max_class_fid=0.000001", gen="gated")
    result = run_sample(cfg)
    assert result["kept"] == 0 and not pngs(cfg.gen_dir())
    assert all(e["not_augmented_because"] == "class_fid" and not e["augmented"] for e in result["classes"].values())
    assert result["mean_class_fid_after"] is not None  # measured before gating, on the filtered set


def test_other_settings_are_refused_unless_forced(smoke_gan):
    cfg = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=1", gen="seeded")
    run_sample(cfg)
    other = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=1", "sample.seed=7", gen="seeded")
    with pytest.raises(GenaugError, match="--force"):
        run_sample(other)
    run_sample(other, force=True)
    assert {r["seed"] >> 40 for r in read_jsonl(other.gen_dir() / "manifest.jsonl")} == {7}


def test_sigkill_during_sampling_then_rerun(smoke_gan):
    gen = smoke_gan / "killed" / "smoke"
    args = ["sample", "--config", str(SMOKE), "--no-filter", "--per-class", "40",
            "--set", f"paths.runs_dir={smoke_gan}/runs", "--set", f"paths.gen_dir={smoke_gan}/killed",
            "--set", "sample.batch_size=4"]
    env_cache = os.environ.get("GENAUG_CACHE")
    kill_after(args, gen / "manifest.jsonl")
    assert 0 < len(read_jsonl(gen / "manifest.jsonl")) < 400
    cfg = cfg_for(smoke_gan, "sample.filter=false", "sample.per_class=40", "sample.batch_size=4", gen="killed")
    run_sample(cfg)
    rows = read_jsonl(gen / "manifest.jsonl")
    assert len(rows) == 400 == len({r["id"] for r in rows})
    assert len(pngs(gen)) == 400 and not list(gen.rglob("*.tmp"))
    for p in pngs(gen):
        with Image.open(p) as img:
            img.load()  # no truncated PNG
    assert env_cache == os.environ.get("GENAUG_CACHE")


def test_decide_keeps_first_passing_per_class_and_marks_the_rest():
    sc = SampleConfig(per_class=2, min_confidence=0.5, near_copy_distance=0.05)

    def row(label, index, conf=0.9, pred=None, dist=1.0, nn=0.3):
        return {"label": label, "index": index, "confidence": conf, "judge_pred": label if pred is None else pred,
                "feature_distance": dist, "nn_distance": nn}

    rows = [row(0, 0), row(0, 1, conf=0.3), row(0, 2, pred=1), row(0, 3, dist=5.0), row(0, 4, nn=0.01),
            row(0, 5), row(0, 6), row(1, 0), row(1, 1, conf=0.1)]
    short = decide(rows, [2.0, 2.0], sc, filtering=True)
    reasons = [r["reason"] for r in rows]
    assert reasons == [None, "low_confidence", "judge_disagrees", "unrealistic", "near_copy", None, "surplus",
                       "class_short", "low_confidence"]
    assert short == [1] and [r["kept"] for r in rows[:7]] == [True, False, False, False, False, True, False]
    assert rows[3]["realism"] == pytest.approx(0.4)
    decide(rows, [2.0, 2.0], sc, filtering=False)
    assert [r["reason"] for r in rows] == [None, None, "surplus", "surplus", "surplus", "surplus", "surplus", None, None]


@pytest.mark.parametrize("name", ["../evil", "../../etc", "/abs", "a/b", ".hidden", "..", "x\x00y", "C:\\win"])
def test_class_names_never_escape_the_dataset_root(tmp_path, name):
    import torch

    root = tmp_path / "gen" / "run"
    store = Store(root, [name, "ok"])
    store.write_png(torch.zeros(1, 4, 4, dtype=torch.uint8), 0, "c0000_0000000", True)
    store.write_png(torch.zeros(1, 4, 4, dtype=torch.uint8), 0, "c0000_0000001", False)
    written = [p for p in tmp_path.rglob("*.png")]
    assert len(written) == 2 and all(root.resolve() in p.resolve().parents for p in written)
    assert not any(part.startswith(".") for p in written for part in p.relative_to(root).parts)
    with pytest.raises(GenaugError):
        store.path(0, "../../../x", True)
    (root / "manifest.jsonl").write_text(json.dumps({"id": "../../../x", "label": 0}) + "\n"
                                         + json.dumps({"id": "c0001_0000000", "label": 0}) + "\n")
    assert store.read_rows() == []  # a forged id or a label that disagrees with the id is dropped


def test_folder_and_checkpoint_class_names_stay_inside(tmp_path):
    """End to end: ImageFolder classes (dot folders are not classes) -> train -> sample;
    then a checkpoint JSON whose class names were edited to '../..' is refused."""
    folder = make_imagefolder(tmp_path / "data", classes=("ok", "a..b", "é ü"), per_class=8)
    make_imagefolder(tmp_path / "data", classes=("..up", ".hidden"), per_class=2)
    cfg = load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen", f"data.source={folder}",
                              "data.real_per_class=null", "data.val_fraction=0.25", "data.test_fraction=0.25",
                              "sample.filter=false", "sample.per_class=2", "gan.steps=3"])
    train_gan(cfg)
    run_sample(cfg)
    assert sorted(d.name for d in (cfg.gen_dir() / "images").iterdir()) == ["a..b", "ok", "é ü"]
    meta_path = cfg.run_dir() / "gan" / "best" / "genaug.json"
    meta = json.loads(meta_path.read_text())
    meta["classes"] = ["../../evil", "/abs", ".hidden"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(GenaugError, match="classes"):
        run_sample(cfg, force=True)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    outside = [p for p in files if not any(p.is_relative_to(tmp_path / d) for d in ("data", "runs", "gen", "cache"))]
    assert outside == [] and not list(tmp_path.rglob("evil*"))


def test_diffusion_checkpoint_is_sampled_by_kind(tmp_path):
    from genaug.generators.diffusion_train import train_diffusion

    cfg = load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen",
                              "sample.generator=diffusion", "sample.filter=false", "sample.per_class=2"])
    train_diffusion(cfg)
    run_sample(cfg)
    rows = read_jsonl(cfg.gen_dir() / "manifest.jsonl")
    assert len(rows) == 20 and rows[0]["sampler"]["kind"] == "diffusion" and rows[0]["sampler"]["steps"] == 4

"""The quality gate (issue 30): a real-vs-synthetic probe that a few-class judge's FID
cannot stand in for, run on best/ after training."""

from __future__ import annotations

import json

import numpy as np

from genaug.config import QualityConfig, load_config
from genaug.data import load_data
from genaug.quality import GRID, QUALITY, realism_probe
from stages import SMOKE


def _real(n: int):
    cfg = load_config(SMOKE, ["data.real_per_class=200"])
    train = load_data(cfg.data).splits["train"]
    pick = np.random.default_rng(0).permutation(len(train))[:n]  # both halves in the same class mix
    return cfg.model_copy(update={"quality": QualityConfig()}), train.images[pick]  # the gate's defaults, not smoke's


def test_the_probe_cannot_tell_real_from_real_and_tells_noise_at_once():
    cfg, real = _real(800)
    same = realism_probe(cfg, real[:400], real[400:])
    noise = np.random.default_rng(0).integers(0, 256, size=real[:400].shape, dtype=np.uint8)
    apart = realism_probe(cfg, real[:400], noise)
    assert same["n_test"] == 200 and same["n_train"] == 400
    assert same["accuracy"] < 0.7 and same["ci95"][0] < 0.5 + 0.1, same  # chance, within its interval
    assert apart["accuracy"] >= cfg.quality.probe_max, apart


def test_an_untrained_generator_is_called_so_after_training(tmp_path, run_cli):
    """The smoke GAN (6 steps) draws grey blobs: its judge FID is a number, but the probe
    separates its images from real ones, and the summary says it is not trained."""
    sets = ["--set", f"paths.runs_dir={tmp_path}/runs", "--set", "quality.probe_images=40", "--set",
            f"quality.probe_steps={QualityConfig().probe_steps}"]
    result = run_cli("train-gan", "--config", str(SMOKE), *sets)
    assert result.exit_code == 0, result.output
    best = tmp_path / "runs" / "smoke" / "gan" / "best"
    q = json.loads((best / QUALITY).read_text())
    assert q["trained"] is False and q["probe"]["accuracy"] >= 0.95 and q["real_images"] == 40
    assert "quality gate: NOT a trained generator" in result.output and str(best / GRID) in result.output
    from PIL import Image

    with Image.open(best / GRID) as img:  # per class a real row and a synthetic row of up to 8 images at 16 px
        assert img.size[0] == 8 * 18 + 2 and img.size[1] > 2 * 18
    again = run_cli("train-gan", "--config", str(SMOKE), *sets, "--resume")  # finished: the verdict is read back
    assert again.exit_code == 0 and json.loads((best / QUALITY).read_text()) == q
    sample = run_cli("sample", "--config", str(SMOKE), *sets, "--set", f"paths.gen_dir={tmp_path}/gen")
    assert sample.exit_code == 0 and "warning: the quality gate called" in sample.output, sample.output


def test_a_verdict_of_another_probe_trainer_is_not_reused(monkeypatch):
    """best/quality.json is keyed by how the probe is trained: after the trainer changes,
    the gate measures again instead of reading the old probe's verdict."""
    import genaug.judge
    from genaug.config import Config
    from genaug.quality import quality_key

    before = quality_key(Config(), "sha")
    monkeypatch.setattr(genaug.judge, "TRAINER_VERSION", genaug.judge.TRAINER_VERSION + 1)
    assert quality_key(Config(), "sha") != before

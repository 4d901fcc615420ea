import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from genaug.config import load_config
from genaug.errors import ConfigError
from genaug.generators import load_generator
from genaug.generators.diffusion import build_unet, sample
from genaug.generators.diffusion_train import train_diffusion
from genaug.io import read_jsonl

from conftest import kill_after

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diffusion")
    cfg = load_config(SMOKE, [f"paths.runs_dir={tmp}/runs", "diffusion.warmup_steps=0", "diffusion.lr=0.002"])
    return cfg, train_diffusion(cfg)


def test_unet_reloads_with_from_pretrained(smoke_run):
    cfg, out = smoke_run
    for name in ("best", "last"):
        unet = UNet2DModel.from_pretrained(str(out / name))
        meta = json.loads((out / name / "genaug.json").read_text())
        assert meta["kind"] == "diffusion" and meta["null_class"] == 10
        assert unet.config.num_class_embeds == 11 and unet.config.sample_size == 16
        model, _ = load_generator(out / name)
        assert isinstance(model, UNet2DModel)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [3, 6] and all("fid" in r and "cond_acc" in r for r in rows)


@pytest.fixture(scope="module")
def unet_and_sched(smoke_run):
    cfg, out = smoke_run
    unet, meta = load_generator(out / "last")
    return unet, meta["scheduler"]


@pytest.mark.parametrize("sampler", ["ddim", "dpm++"])
def test_sampling_is_deterministic_per_seed(unet_and_sched, sampler):
    unet, sched = unet_and_sched
    labels = torch.tensor([0, 1, 2, 3])
    a = sample(unet, sched, labels, [7, 8, 9, 10], sampler=sampler, steps=4, guidance_scale=2.0)
    b = sample(unet, sched, labels, [7, 8, 9, 10], sampler=sampler, steps=4, guidance_scale=2.0)
    c = sample(unet, sched, labels, [7, 8, 9, 11], sampler=sampler, steps=4, guidance_scale=2.0)
    assert a.dtype == torch.uint8 and a.shape == (4, 1, 16, 16)
    assert torch.equal(a, b)
    assert torch.equal(a[:3], c[:3]) and not torch.equal(a[3], c[3])


def test_guidance_scale_changes_images(unet_and_sched):
    unet, sched = unet_and_sched
    labels = torch.tensor([0, 1, 2, 3])
    g0 = sample(unet, sched, labels, [1, 2, 3, 4], steps=4, guidance_scale=0.0)
    g3 = sample(unet, sched, labels, [1, 2, 3, 4], steps=4, guidance_scale=3.0)
    assert (g0.int() - g3.int()).abs().sum() > 0


def test_image_size_must_fit_the_levels():
    cfg = load_config(SMOKE, ["diffusion.block_channels=[8,16,16]"])
    with pytest.raises(ConfigError, match="not divisible"):
        build_unet(cfg.diffusion, num_classes=2, channels=1, image_size=18)


def test_sigkill_then_resume_diffusion(tmp_path):
    common = ["train-diffusion", "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs",
              "--set", "diffusion.steps=120", "--set", "diffusion.checkpoint_every=10", "--set", "diffusion.log_every=5",
              "--set", "diffusion.eval_every=60"]
    ckpt = tmp_path / "runs" / "smoke" / "diffusion" / "checkpoints" / "step_0000010"
    kill_after(common, ckpt)
    done = subprocess.run([sys.executable, "-m", "genaug", *common, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "resumed from step" in done.stdout
    out = tmp_path / "runs" / "smoke" / "diffusion"
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(5, 121, 5))
    assert json.loads((out / "last" / "genaug.json").read_text())["step"] == 120
    assert (out / "checkpoints" / "step_0000120" / "ema.safetensors").is_file()

"""Pretrained priors (issue 20): diffusion.init_from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genaug.config import load_config
from genaug.errors import GenaugError

from conftest import make_imagefolder, one_line_error
from stages import genaug, ok

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def test_init_from_another_runs_unet_with_other_classes_trains_and_samples(tmp_path):
    ok(genaug(tmp_path, "train-diffusion", "--run", "source"))  # MNIST digits, 10 classes
    source = tmp_path / "runs/source/diffusion/best"
    folder = make_imagefolder(tmp_path / "two", classes=("cat", "dog"), per_class=12, size=(16, 16))
    sets = [f"data.source={folder}", "data.image_size=16", f"diffusion.init_from={source}", "sample.generator=diffusion",
            "sample.per_class=3", "sample.filter=false"]
    ok(genaug(tmp_path, "train-diffusion", sets=sets))
    meta = json.loads((tmp_path / "runs/smoke/diffusion/best/genaug.json").read_text())
    init = meta["init_from"]
    assert init["source"] == str(source) and init["source_classes"] == [str(d) for d in range(10)]
    assert "resized from 11 to 3 rows" in init["class_embedding"]
    unet_cfg = json.loads((tmp_path / "runs/smoke/diffusion/best/config.json").read_text())
    assert unet_cfg["num_class_embeds"] == 3
    src_cfg = json.loads((source / "config.json").read_text())
    assert unet_cfg["block_out_channels"] == src_cfg["block_out_channels"]  # the source's architecture
    ok(genaug(tmp_path, "sample", sets=sets))
    kept = [p for p in (tmp_path / "gen/smoke/images").rglob("*.png")]
    assert len(kept) == 6


def _unet_dir(tmp_path: Path, *, classes: int | None, channels=1, size=16) -> Path:
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=classes)
    out = tmp_path / f"unet_{classes}_{channels}_{size}"
    unet.save_pretrained(str(out))
    return out


def test_unconditional_source_gets_a_zero_class_embedding_so_it_starts_as_the_source(tmp_path):
    from diffusers import UNet2DModel

    from genaug.generators.pretrained import init_unet

    src = _unet_dir(tmp_path, classes=None)
    unet, info = init_unet(str(src), classes=["a", "b"], channels=1, image_size=16)
    assert "created" in info["class_embedding"] and unet.config.num_class_embeds == 3
    base = UNet2DModel.from_pretrained(str(src)).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 500])
    with torch.no_grad():
        a = base(x, t).sample
        b = unet.eval()(x, t, class_labels=torch.tensor([0, 2])).sample
    assert torch.allclose(a, b, atol=1e-6)


def test_same_classes_keep_their_embedding(tmp_path):
    from genaug.generators.pretrained import init_unet

    src = _unet_dir(tmp_path, classes=3)
    (src / "genaug.json").write_text(json.dumps({"architecture": "diffusers-unet2d", "classes": ["a", "b"], "step": 7}))
    unet, info = init_unet(str(src), classes=["a", "b"], channels=1, image_size=16)
    assert info["class_embedding"] == "kept (same classes)" and info["source_step"] == 7


@pytest.mark.parametrize("kind, needle", [
    ("channels", "the UNet takes 1 channel(s), the data has 3"),
    ("size", "the UNet was trained at 16x16, the data is 32x32"),
    ("not_unet", "not a diffusers UNet2DModel directory"),
    ("hub_offline", "offline, download it where there is a network"),
])
def test_bad_init_from_is_one_line(tmp_path, run_cli, monkeypatch, kind, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = make_imagefolder(tmp_path / "rgb", classes=("cat", "dog"), per_class=6, size=(16, 16),
                              mode="RGB" if kind == "channels" else "L")
    spec = {"channels": _unet_dir(tmp_path, classes=3), "size": _unet_dir(tmp_path, classes=3),
            "not_unet": folder, "hub_offline": "someone/no-such-unet-offline"}[kind]
    sets = ["--set", f"data.source={folder}", "--set", f"data.image_size={32 if kind == 'size' else 16}",
            "--set", f"diffusion.init_from={spec}", "--set", f"paths.runs_dir={tmp_path}/runs"]
    res = run_cli("train-diffusion", "--config", str(SMOKE), *sets)
    one_line_error(res, needle)


def test_init_from_left_unset_keeps_old_hashes():
    from genaug.runs import config_hash

    cfg = load_config(SMOKE)
    assert config_hash(cfg, "diffusion") == config_hash(load_config(SMOKE, ["diffusion.init_from=null"]), "diffusion")
    assert config_hash(cfg, "diffusion") != config_hash(load_config(SMOKE, ["diffusion.init_from=x"]), "diffusion")


# --- the img2img generator kind (a tiny Stable-Diffusion pipeline built from configs) ---------

@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    from genaug.generators.img2img import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny_img2img") / "pipe")


def img2img_sets(pipe: Path) -> list[str]:
    return ["sample.generator=img2img", f"img2img.model={pipe}", "img2img.steps=4", "img2img.strengths=[0.5,1.0]",
            "sample.filter=false", "sample.per_class=3", "img2img.prompts={'3': 'a handwritten three'}"]


def test_img2img_sample_then_both_eval_protocols_end_to_end(tiny_pipeline, tmp_path):
    sets = img2img_sets(tiny_pipeline)
    ok(genaug(tmp_path, "pipeline", sets=[*sets, "eval.mix=0.5", "eval.replace_prob=0.5"]))
    from genaug.io import read_jsonl

    rows = read_jsonl(tmp_path / "gen/smoke/manifest.jsonl")
    splits = json.loads((tmp_path / "runs/smoke/splits.json").read_text())
    train = dict(zip(splits["splits"]["train"]["ids"], splits["splits"]["train"]["labels"]))
    assert len(rows) == 30 and all(r["kept"] for r in rows)
    for r in rows:  # each variant names its own class's real image, its strength, prompt and seed
        assert train[r["source_id"]] == r["label"] and r["strength"] in (0.5, 1.0) and isinstance(r["seed"], int)
        assert r["prompt"] == ("a handwritten three" if r["class_name"] == "3" else f"a photo of a {r['class_name']}")
    from PIL import Image

    img = Image.open(tmp_path / "gen/smoke" / rows[0]["path"])
    assert img.size == (16, 16) and img.mode == "L"  # the data's size and channels
    m = json.loads((tmp_path / "runs/smoke/eval/metrics.json").read_text())
    assert [s["mix"] for s in m["settings"]] == [0.0, 0.5]  # the share protocol
    rep = m["replace"]  # and DA-Fusion's replace protocol, same seeds
    assert rep["p"] == 0.5 and rep["with_variants"] == 30 and "gain_acc" in rep["settings"][0]
    assert 0 < rep["settings"][0]["synthetic_share_seen"] < 0.5
    report = (tmp_path / "runs/smoke/report.md").read_text()
    assert "DA-Fusion's protocol" in report and "+ synthetic (replace p=0.5)" in report
    assert f"Pretrained img2img pipeline {tiny_pipeline} (nothing trained)" in report


@pytest.mark.slow
def test_img2img_same_seed_same_image(tiny_pipeline, tmp_path):
    sets = img2img_sets(tiny_pipeline)
    ok(genaug(tmp_path, "sample", sets=sets))
    pngs = sorted((tmp_path / "gen/smoke/images").rglob("*.png"))
    before = pngs[4].read_bytes()
    pngs[4].unlink()
    ok(genaug(tmp_path, "sample", sets=sets))  # repaired from its seed and plan
    assert pngs[4].read_bytes() == before


@pytest.mark.parametrize("model, needle", [
    ("someone/no-such-pipeline-offline", "offline, download it where there is a network"),
    ("UNET", "not a diffusers pipeline folder (no model_index.json"),
    ("", "needs img2img.model"),
])
def test_bad_img2img_model_is_one_line(tmp_path, run_cli, monkeypatch, model, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if model == "UNET":
        model = str(_unet_dir(tmp_path, classes=3))
    res = run_cli("sample", "--config", str(SMOKE), "--set", "sample.generator=img2img", "--set",
                  f"img2img.model={model or 'null'}", "--set", f"paths.runs_dir={tmp_path}/runs",
                  "--set", f"paths.gen_dir={tmp_path}/gen")
    one_line_error(res, needle)


def test_img2img_prompts_for_unknown_classes_are_refused(tiny_pipeline, tmp_path):
    from genaug.data import load_data
    from genaug.generators.img2img import VariantPlan

    cfg = load_config(SMOKE, ["img2img.prompts={'cat': 'x'}"])
    with pytest.raises(GenaugError, match="prompts names classes the data does not have: \\['cat'\\]"):
        VariantPlan(cfg, load_data(cfg.data))

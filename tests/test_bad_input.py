"""The bad-input matrix (issue #9; tests/README.md lists every case).

Images: each case puts one odd file into an otherwise good two-class ImageFolder and
says what must happen: it is read (and normalised), ignored, or refused with a
one-line DataError naming the file. Configs, checkpoints and untrusted pickles follow.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genaug.config import DataConfig, load_config
from genaug.data import load_data
from genaug.errors import ConfigError, DataError, GenaugError

from conftest import make_imagefolder, write_image

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


# --- image files ---------------------------------------------------------------------

def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def _truncated(path: Path, fmt: str) -> None:
    write_image(path, size=(64, 64), mode="RGB", fmt=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _image(mode: str, fmt: str = "PNG", size=(20, 20)):
    def make(path: Path) -> None:
        write_image(path, size=size, mode=mode, seed=7, fmt=fmt)
    return make


def _rgba_transparent(path: Path) -> None:
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(path)  # fully transparent black -> white


def _palette_with_transparency(path: Path) -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.save(path, transparency=0)


def _png16(path: Path) -> None:
    Image.fromarray(np.full((20, 20), 40000, dtype=np.uint16)).save(path)


def _animated_gif(path: Path) -> None:
    frames = [Image.new("L", (20, 20), v) for v in (10, 200)]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def _symlink_loop(path: Path) -> None:
    os.symlink(path.parent, path.with_suffix(""))  # cat/loop -> cat/


# name -> (what goes into cat/<file>, expected outcome: "read", "ignored" or an error regex)
IMAGE_CASES = {
    "truncated JPEG": ("bad.jpg", lambda p: _truncated(p, "JPEG"), "unreadable image.*bad.jpg"),
    "truncated PNG": ("bad.png", lambda p: _truncated(p, "PNG"), "unreadable image.*bad.png"),
    "zero-byte file": ("zero.png", lambda p: p.write_bytes(b""), "unreadable image.*zero.png"),
    "random bytes as .png": ("noise.png", lambda p: p.write_bytes(os.urandom(2048)), "unreadable image.*noise.png"),
    "text file named .jpg": ("notes.jpg", lambda p: p.write_text("not an image\n"), "unreadable image.*notes.jpg"),
    "header claims 30000x30000": ("bomb.png", lambda p: _png_header_only(p, 30000, 30000), "bomb.png.*pixel"),
    "non-image file (.txt, .csv)": ("notes.txt", lambda p: p.write_text("x"), "ignored"),
    "hidden files (.DS_Store, ._x.png)": (".DS_Store", lambda p: p.write_bytes(b"\x00\x01"), "ignored"),
    "broken symlink": ("gone.png", lambda p: os.symlink(p.parent / "missing.png", p), "ignored"),
    "symlink loop": ("loop.png", _symlink_loop, "read"),
    "CMYK JPEG": ("cmyk.jpg", _image("CMYK", "JPEG"), "read"),
    "RGBA PNG (transparent)": ("rgba.png", _rgba_transparent, "read"),
    "palette PNG": ("pal.png", _image("P"), "read"),
    "palette PNG with transparency": ("palt.png", _palette_with_transparency, "read"),
    "16-bit grayscale PNG": ("deep.png", _png16, "read"),
    "1-bit PNG": ("bw.png", _image("1"), "read"),
    "grayscale + alpha PNG": ("la.png", _image("LA"), "read"),
    "animated GIF": ("anim.gif", _animated_gif, "read"),
    "upper-case extension": ("UPPER.PNG", _image("RGB"), "read"),
    "PNG bytes named .jpg": ("actually_png.jpg", _image("RGB", "PNG"), "read"),
    "non-square, 5x larger": ("wide.png", _image("RGB", size=(100, 40)), "read"),
}


@pytest.mark.parametrize("case", IMAGE_CASES, ids=list(IMAGE_CASES))
def test_image_file_matrix(tmp_path, case):
    name, make, expect = IMAGE_CASES[case]
    root = make_imagefolder(tmp_path / "d", per_class=4, size=(20, 20))
    make(root / "cat" / name)
    cfg = DataConfig(source=str(root), val_fraction=0.0, test_fraction=0.0)
    if expect not in ("read", "ignored"):
        with pytest.raises(DataError, match=expect):
            load_data(cfg)
        return
    data = load_data(cfg)
    train = data.splits["train"]
    assert len(train) == 8 + (expect == "read" and case != "symlink loop")  # a loop adds no image (and none twice)
    assert train.images.dtype == np.uint8 and train.images.shape[1:3] == (20, 20)
    if case == "RGBA PNG (transparent)":
        i = [k for k, id_ in enumerate(train.ids) if id_.endswith("rgba.png")][0]
        assert train.images[i].min() == 255  # composited onto white, not black
    if case == "16-bit grayscale PNG":
        i = [k for k, id_ in enumerate(train.ids) if id_.endswith("deep.png")][0]
        assert 150 <= train.images[i].mean() <= 160  # 40000 / 65535 * 255 = 155.6: rescaled, not clipped


def test_bad_image_can_be_skipped_with_a_count(tmp_path):
    root = make_imagefolder(tmp_path / "d", per_class=4)
    for name, make, _ in (IMAGE_CASES["zero-byte file"], IMAGE_CASES["truncated JPEG"], IMAGE_CASES["random bytes as .png"]):
        make(root / "cat" / name)
    data = load_data(DataConfig(source=str(root), skip_bad_images=True, val_fraction=0.0, test_fraction=0.0))
    assert len(data.skipped) == 3 and len(data.splits["train"]) == 8


def test_10000px_image_is_resized_in_bounded_memory(tmp_path):
    """A 10000x10000 RGB photo (300 MB decoded) in a folder of 28 px images: read and
    resized; the process's peak memory stays under 1.5 GB."""
    root = make_imagefolder(tmp_path / "d", per_class=4, size=(28, 28))
    Image.new("RGB", (10000, 10000), (120, 30, 200)).save(root / "cat" / "huge.png", compress_level=1)
    code = ("import resource, sys; from genaug.config import DataConfig; from genaug.data import load_data; "
            f"d = load_data(DataConfig(source={str(root)!r}, image_size=28, val_fraction=0.0, test_fraction=0.0)); "
            "print(len(d.splits['train']), d.splits['train'].images.shape, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, *_, peak_mb = proc.stdout.split()
    assert int(n) == 9 and int(peak_mb) < 1500, proc.stdout


def test_unicode_class_names_survive_load_and_export(tmp_path, run_cli):
    names = ("Straße", "猫", "🙂 smile")
    root = make_imagefolder(tmp_path / "d", classes=names, per_class=4)
    data = load_data(DataConfig(source=str(root), val_fraction=0.0, test_fraction=0.0))
    assert data.classes == sorted(names)
    result = run_cli("data", "export", str(root), str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)


# --- configs ---------------------------------------------------------------------------

CONFIG_CASES = {
    "string for an int": (["gan.steps=abc"], "gan.steps"),
    "float for an int": (["gan.steps=1.5"], "gan.steps"),
    "negative learning rate": (["gan.lr_g=-0.1"], "gan.lr_g"),
    "unknown choice": (["gan.loss=wasserstein"], "gan.loss.*hinge"),
    "list for a number": (["eval.lr=[1, 2]"], "eval.lr"),
    "run name with a path": (["run=../../etc"], "run"),
    "fraction above 1": (["data.val_fraction=1.5"], "data.val_fraction"),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config_value_is_named(case):
    overrides, named = CONFIG_CASES[case]
    with pytest.raises(ConfigError, match=named):
        load_config(SMOKE, overrides)


@pytest.mark.parametrize("text, named", [
    ("gan: [1, 2\n", "bad.yaml"),  # YAML syntax error
    ("gan: 5\n", "gan"),  # a section that is not a mapping
    ("- just\n- a list\n", "bad.yaml"),
])
def test_bad_config_file_is_named(tmp_path, text, named):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(path, [])


# --- checkpoints and untrusted files -------------------------------------------------------

class _Payload:
    """Unpickling this runs ``touch marker``: the test fails if the marker appears."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def code_pickle(path: Path, marker: Path) -> Path:
    torch.save({"state": _Payload(marker)}, path)  # a torch zip file whose pickle carries code
    return path


@pytest.fixture(scope="module")
def smoke_gan(tmp_path_factory) -> Path:
    from genaug.generators.gan_train import train_gan

    base = tmp_path_factory.mktemp("gan")
    train_gan(load_config(SMOKE, [f"paths.runs_dir={base}/runs", f"paths.gen_dir={base}/gen"]))
    return base


def sample_cfg(base: Path, *extra: str):
    return load_config(SMOKE, [f"paths.runs_dir={base}/runs", f"paths.gen_dir={base}/gen", *extra])


def test_checkpoint_of_the_wrong_kind_is_refused(smoke_gan):
    from genaug.synthetic.sample import run_sample

    judge = smoke_gan / "runs/smoke/judge"
    with pytest.raises(GenaugError, match="not a genaug generator checkpoint"):
        run_sample(sample_cfg(smoke_gan, f"sample.checkpoint={judge}"))


def test_checkpoint_with_another_class_count_is_refused(smoke_gan, tmp_path):
    from genaug.synthetic.sample import run_sample

    folder = make_imagefolder(tmp_path / "two", classes=("a", "b"), per_class=12, size=(16, 16))
    cfg = sample_cfg(tmp_path, f"data.source={folder}", "data.real_per_class=null",
                     f"sample.checkpoint={smoke_gan}/runs/smoke/gan/best")
    with pytest.raises(GenaugError, match="trained on classes"):
        run_sample(cfg)


def test_checkpoint_whose_weights_do_not_fit_its_json_is_refused(smoke_gan, tmp_path):
    from genaug.generators import load_generator

    bad = tmp_path / "ckpt"
    shutil.copytree(smoke_gan / "runs/smoke/gan/best", bad)
    meta = json.loads((bad / "genaug.json").read_text())
    meta["args"]["width"] *= 2
    (bad / "genaug.json").write_text(json.dumps(meta))
    with pytest.raises(GenaugError, match="weights do not match"):
        load_generator(bad)


def test_generator_weights_that_are_a_code_pickle_are_never_unpickled(smoke_gan, tmp_path):
    from genaug.generators import load_generator

    bad, marker = tmp_path / "ckpt", tmp_path / "pwned"
    shutil.copytree(smoke_gan / "runs/smoke/gan/best", bad)
    code_pickle(bad / "model.safetensors", marker)
    with pytest.raises(GenaugError, match="not a readable safetensors file"):
        load_generator(bad)
    assert not marker.exists()


def test_diffusion_checkpoint_with_only_a_pickled_bin_is_refused(tmp_path):
    from genaug.generators import load_generator

    bad, marker = tmp_path / "unet", tmp_path / "pwned"
    bad.mkdir()
    (bad / "genaug.json").write_text(json.dumps({"architecture": "diffusers-unet2d", "kind": "diffusion"}))
    (bad / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 16}))
    code_pickle(bad / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(GenaugError, match="safetensors"):
        load_generator(bad)
    assert not marker.exists()


def test_resume_from_a_checkpoint_carrying_code_is_refused(smoke_gan, tmp_path):
    from genaug.generators.gan_train import train_gan

    base, marker = tmp_path / "b", tmp_path / "pwned"
    shutil.copytree(smoke_gan / "runs", base / "runs")
    newest = sorted((base / "runs/smoke/gan/checkpoints").iterdir())[-1]
    code_pickle(newest / "optimizer.bin", marker)
    cfg = load_config(SMOKE, [f"paths.runs_dir={base}/runs", "gan.steps=9"])
    with pytest.raises(GenaugError, match="cannot resume from .*never unpickled"):
        train_gan(cfg, resume=True)
    assert not marker.exists()


def test_pretrained_file_carrying_code_is_refused(tmp_path):
    from genaug.evaluate.classifier import create_classifier

    marker = tmp_path / "pwned"
    path = code_pickle(tmp_path / "weights.pth", marker)
    cfg = load_config(SMOKE, ["eval.model=resnet18", f"eval.pretrained_file={path}"])
    with pytest.raises(ConfigError, match="weights_only"):
        create_classifier(cfg.eval, num_classes=10, channels=1, data_size=16)
    assert not marker.exists()


def test_judge_weights_that_are_a_code_pickle_are_refused(smoke_gan, tmp_path):
    from genaug.judge import load_judge

    bad, marker = tmp_path / "judge", tmp_path / "pwned"
    shutil.copytree(smoke_gan / "runs/smoke/judge", bad)
    code_pickle(bad / "model.safetensors", marker)
    with pytest.raises(GenaugError, match="never unpickles"):
        load_judge(bad)
    assert not marker.exists()


def test_pickle_module_is_not_used_to_read_anything():
    """Belt and braces: no genaug module calls pickle.load(s) or torch.load without weights_only=True."""
    import re

    # The one exception: an evaluation worker unpickles the bytes its parent pickled in
    # memory a moment before and handed over the process pool's pipe (the pool pickles
    # every task and result the same way); nothing read from a file is ever unpickled.
    allowed = {"genaug/evaluate/workers.py": "    cfg, ed, arms = pickle.loads(blob)"}
    for path in (ROOT / "genaug").rglob("*.py"):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            assert text.count("pickle.load") == 1 and allowed[rel] in text.splitlines(), rel
            text = text.replace(allowed[rel], "")
        assert not re.search(r"pickle\.loads?\(", text), path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (path, line)

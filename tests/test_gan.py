import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genaug.config import load_config
from genaug.errors import ConfigError, GenaugError
from genaug.generators import load_generator
from genaug.generators.dcgan import Discriminator, Generator, factor_size
from genaug.generators.diffaugment import diff_augment, parse_policy
from genaug.generators.gan_train import WarmupEMA, generate, train_gan
from genaug.io import read_jsonl

from conftest import kill_after

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def smoke_cfg(tmp_path, *extra):
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen", *extra])


@pytest.mark.parametrize("size, channels", [(16, 1), (28, 1), (32, 3), (64, 3)])
def test_models_forward_backward_no_nan(size, channels):
    G = Generator(z_dim=8, num_classes=3, channels=channels, image_size=size, width=8)
    D = Discriminator(num_classes=3, channels=channels, image_size=size, width=8)
    y = torch.tensor([0, 1, 2, 1])
    x = G(torch.randn(4, 8), y)
    assert x.shape == (4, channels, size, size) and x.abs().max() <= 1
    out, cls = D(x, y)
    assert out.shape == (4,) and cls.shape == (4, 3)
    (out.sum() + cls.sum()).backward()
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bad_image_size_is_a_config_error():
    with pytest.raises(ConfigError, match="30"):
        factor_size(30)


def test_diffaugment_is_seeded_differentiable_and_shape_preserving():
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_()
    policy = parse_policy("color,translation,cutout")
    a = diff_augment(x, policy, torch.Generator().manual_seed(1))
    b = diff_augment(x, policy, torch.Generator().manual_seed(1))
    c = diff_augment(x, policy, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ()), x)
    cut = diff_augment(torch.ones(4, 1, 16, 16), ("cutout",), torch.Generator().manual_seed(0))
    assert (cut == 0).sum() > 0  # a square was really cut out
    with pytest.raises(ConfigError):
        parse_policy("translation,blur")


def test_generate_same_seed_same_image_any_batch_size():
    G = Generator(z_dim=8, num_classes=3, channels=1, image_size=16, width=8).eval()
    labels = torch.tensor([0, 1, 2, 0, 1])
    a = generate(G, labels, [5, 6, 7, 8, 9], 8, batch_size=5)
    b = generate(G, labels, [5, 6, 7, 8, 9], 8, batch_size=2)
    assert a.dtype == torch.uint8 and torch.equal(a, b)
    c = generate(G, labels[:1], [5], 8)
    assert torch.equal(c[0], a[0])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan")
    cfg = smoke_cfg(tmp)
    out = train_gan(cfg)
    return cfg, out


def test_smoke_writes_best_and_last_that_rebuild_from_json(smoke_run):
    cfg, out = smoke_run
    for name in ("best", "last"):
        state = load_file(str(out / name / "model.safetensors"))
        meta = json.loads((out / name / "genaug.json").read_text())
        # Rebuild from the JSON alone: constructor args + class names + step.
        G = Generator(**meta["args"])
        G.load_state_dict(state)
        assert meta["kind"] == "gan" and meta["classes"] == [str(d) for d in range(10)]
        model, _ = load_generator(out / name)
        x = model(torch.randn(2, meta["args"]["z_dim"]), torch.tensor([0, 1]))
        assert x.shape == (2, 1, 16, 16)
    assert json.loads((out / "last" / "genaug.json").read_text())["step"] == cfg.gan.steps


def test_smoke_metrics_grids_and_splits(smoke_run):
    cfg, out = smoke_run
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [3, 6]
    for r in rows:
        assert r["fid_extractor"] == "judge" and r["fid_n_fake"] == cfg.gan.fid_samples and r["fid_n_real"] == 200
        assert 0.0 <= r["cond_acc"] <= 1.0 and r["fid"] >= 0
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["step_0000003.png", "step_0000006.png"]
    splits = json.loads((cfg.run_dir() / "splits.json").read_text())
    assert len(splits["splits"]["train"]["ids"]) == 200
    assert (cfg.run_dir() / "config.yaml").is_file()
    best = json.loads((out / "best" / "genaug.json").read_text())
    assert best["fidelity"]["fid"] == min(r["fid"] for r in rows)


def test_existing_run_needs_resume(smoke_run):
    cfg, _ = smoke_run
    with pytest.raises(GenaugError, match="--resume"):
        train_gan(cfg)


def test_resume_of_finished_run_is_a_no_op(smoke_run):
    cfg, out = smoke_run
    before = (out / "metrics.jsonl").read_text()
    train_gan(cfg, resume=True)
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_with_other_model_settings_is_refused(smoke_run, tmp_path):
    cfg, _ = smoke_run
    changed = cfg.model_copy(update={"gan": cfg.gan.model_copy(update={"z_dim": 32})})
    with pytest.raises(GenaugError, match="cannot resume .*gan settings"):
        train_gan(changed, resume=True)


def test_warmup_ema_matches_averaged_model_bit_for_bit_and_loads_its_state():
    from torch.optim.swa_utils import AveragedModel

    def avg_fn(averaged, current, num_averaged):  # what the GAN trainer used before WarmupEMA
        n = float(num_averaged)
        d = min(0.99, (1 + n) / (10 + n))
        return averaged * d + current * (1 - d)

    torch.manual_seed(0)
    G = Generator(z_dim=8, num_classes=3, channels=1, image_size=16, width=8)
    ref, ema = AveragedModel(G, avg_fn=avg_fn, use_buffers=True), WarmupEMA(G, 0.99)
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    for _ in range(5):
        G.train()
        G(torch.randn(4, 8), torch.tensor([0, 1, 2, 0])).square().mean().backward()  # moves BatchNorm's buffers too
        opt.step()
        ref.update_parameters(G)
        ema.update_parameters(G)
    want, got = ref.state_dict(), ema.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    resumed = WarmupEMA(G, 0.99)
    resumed.load_state_dict(want)  # a checkpoint written by AveragedModel resumes
    assert resumed.updates == 5


def test_finite_watch_names_the_first_non_finite_loss_and_its_step():
    from genaug.training import FiniteWatch, NonFiniteLoss

    watch = FiniteWatch({"loss_d": "discriminator", "loss_g": "generator"})
    for step, (d, g) in enumerate([(1.0, 2.0), (0.5, float("inf")), (float("nan"), float("nan"))]):
        watch.add(step, {"loss_d": torch.tensor(d), "loss_g": torch.tensor(g), "d_real": torch.tensor(0.0)})
    with pytest.raises(NonFiniteLoss, match="generator loss is inf") as caught:
        watch.check()
    assert caught.value.step == 1
    fine = FiniteWatch({"loss": "diffusion"})
    fine.add(0, {"loss": torch.tensor(0.1)})
    fine.check()


def test_non_finite_loss_stops_with_message(tmp_path, monkeypatch):
    import genaug.generators.gan_train as gt

    real_loss = gt.d_loss
    calls = {"n": 0}

    def exploding(kind, r, f):
        calls["n"] += 1
        loss = real_loss(kind, r, f)
        return loss * float("nan") if calls["n"] > 4 else loss

    monkeypatch.setattr(gt, "d_loss", exploding)
    cfg = smoke_cfg(tmp_path)
    with pytest.raises(GenaugError, match=r"step 4: discriminator loss is nan; the last good checkpoint is .*step_0000003"):
        train_gan(cfg)


def test_sigkill_then_resume_has_no_duplicate_or_missing_steps(tmp_path):
    common = ["train-gan", "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs",
              "--set", "gan.steps=200", "--set", "gan.checkpoint_every=10", "--set", "gan.log_every=5",
              "--set", "gan.eval_every=100"]
    ckpt = tmp_path / "runs" / "smoke" / "gan" / "checkpoints" / "step_0000010"
    kill_after(common, ckpt)
    metrics = tmp_path / "runs" / "smoke" / "gan" / "metrics.jsonl"
    done = subprocess.run([sys.executable, "-m", "genaug", *common, "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    steps = [r["step"] for r in read_jsonl(metrics)]
    assert steps == list(range(5, 201, 5))
    assert "resumed from step" in done.stdout
    assert json.loads((metrics.parent / "last" / "genaug.json").read_text())["step"] == 200
    ckpts = sorted((metrics.parent / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step_0000190", "step_0000200"]  # newest two, no temp dirs
    assert (ckpts[-1] / "ema.safetensors").is_file() and (ckpts[-1] / "train_state.json").is_file()
    assert not list(ckpts[-1].glob("custom_checkpoint*"))  # nothing of ours is pickled


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "-m", "genaug", "train-gan",
                           "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "runs" / "smoke" / "gan"
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl")]
    assert steps == [3, 6]  # rank 0 writes once per step, not once per process
    load_generator(out / "best")


def test_cli_train_gan_prints_summary(run_cli, tmp_path):
    result = run_cli("train-gan", "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs")
    assert result.exit_code == 0, result.output
    assert "done: best/ = step" in result.output and "judge features" in result.output
    again = run_cli("train-gan", "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs")
    assert again.exit_code == 1 and "--resume" in again.output

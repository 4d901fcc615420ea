"""Throughput of genaug's training and sampling loops against a plain PyTorch loop of
the same model and against denoising-diffusion-pytorch, in one run (issue #8).

Every case runs in its own child process (so its peak memory is its own) on batches of
real MNIST-5k training digits (28x28, 1 channel), ``--repeats`` times; the table gives
the median images/s, the spread (min-max) and the peak memory.

* GAN training: genaug's step (accelerate, DiffAugment, auxiliary classifier, EMA) vs a
  plain fp32 loop of the same G and D (hinge loss, Adam, nothing else).
* Diffusion training: genaug's step (v-prediction, label dropout, EMA, LR schedule) vs a
  plain fp32 loop of the same UNet vs denoising-diffusion-pytorch's class-conditional
  Unet of about the same size.
* Sampling: the GAN's EMA generator; the diffusion UNet with DPM++ at 10/25/50 steps and
  guidance 2 (two UNet passes per step); the peer's DDIM at 25 steps.
* Classifier training: genaug's eval step (uint8 -> normalised input, shift
  augmentation, label smoothing, channels-last) vs a plain fp32 loop of resnet_small28.
* Evaluation runs per minute: ``--eval-runs`` whole evaluation runs (train_once: the
  default classifier, RandAugment, val checks, best-val weights, test metrics) of
  ``--eval-steps`` steps each, one at a time in one process (all cores' threads) vs
  batched over worker processes (``eval.workers: auto``: one per core), same steps.

    pip install denoising-diffusion-pytorch   # the peer, optional (rows skipped without it)
    python scripts/bench_speed.py [--repeats 3] [--steps 20] [--write BENCHMARKS.md]

Each genaug loop also gets its model FLOP/s (torch.utils.flop_counter on one call of the
step, times images/s) and the utilisation that makes of the device: a GPU's datasheet
dense bf16 peak (PEAK_BF16_TFLOPS, or --peak-tflops), a CPU's measured matmul ceiling;
and its host reads per step (``host_reads``): GPU syncs, counted the same on any device.

With --write, the table replaces the section between the bench_speed_<device>[_<options>]
markers (one per option set, so before/after tables sit side by side). A GPU, when
present, is used (with --precision bf16 / --channels-last / --compile options); CPU and
GPU numbers are written as separate tables, never as one ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

CASES = ["gan_train_genaug", "gan_train_plain", "diffusion_train_genaug", "diffusion_train_plain", "diffusion_train_peer",
         "gan_sample", "diffusion_sample_10", "diffusion_sample_25", "diffusion_sample_50", "peer_sample_25",
         "classifier_train_genaug", "classifier_train_plain", "classifier_input_randaugment", "eval_runs_one_at_a_time",
         "eval_runs_batched", "matmul_ceiling"]

# Datasheet dense bf16 tensor-core peaks (TFLOP/s, no sparsity), matched in this order
# against torch.cuda.get_device_name(); --peak-tflops overrides.
# Only names that no other GPU's name contains ("L4" would also match an L40, "A10" an A10G).
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.5), ("H100 NVL", 835.5), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0),
                    ("L40S", 362.1)]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n real MNIST-5k training digits: uint8 (n, 1, 28, 28) and labels (n,)."""
    from genaug.config import DataConfig
    from genaug.data import load_data

    train = load_data(DataConfig(source="mnist5k")).splits["train"]
    return torch.from_numpy(train.images[:n]).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(train.labels[:n])


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn, steps: int, warmup: int = 3) -> float:
    """Seconds per call of fn, after warmup calls; the device is synchronised around."""
    for _ in range(warmup):
        fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync()
    return (time.perf_counter() - t0) / steps


def _flops(fn) -> float:
    """Model FLOPs of one call of fn (matmuls and convolutions, forward and backward), as
    torch.utils.flop_counter counts them: 2 per multiply-add."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# Ops that hand a tensor's value to the host: .item(), float(), bool() and int() run
# _local_scalar_dense; nonzero and masked_select must learn their output size.
HOST_READ_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default"}
# torch's own plumbing between a tensor method (or a wrapped function) and the dispatcher
PLUMBING = ("_python_dispatch", "torch/_tensor.py", "torch/_compile.py", "torch/_dynamo/", "torch/utils/_contextlib")


def _reader(frame) -> str:
    """The file of the innermost frame at or above ``frame`` that is not torch's plumbing."""
    while frame and any(k in frame.f_code.co_filename.replace(os.sep, "/") for k in PLUMBING):
        frame = frame.f_back
    return frame.f_code.co_filename.replace(os.sep, "/") if frame else ""


def host_reads(fn) -> int:
    """How many times one call of fn reads a tensor's value back to the host. With the
    tensor on a GPU each read is a sync: the host waits until the GPU has finished
    everything queued, so it cannot queue the next kernels meanwhile. Counted by a torch
    dispatch mode, so the count is the same on a CPU, where reads cost nothing. Reads made
    inside torch.optim's optimisers are left out: their step counters stay CPU tensors on
    a GPU (unless capturable or fused); its AveragedModel's are counted."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if str(func) in HOST_READ_OPS:
                where = _reader(sys._getframe(1))
                self.n += not ("torch/optim/" in where and not where.endswith("swa_utils.py"))
            return func(*args, **(kwargs or {}))

    counter = Count()
    counter.n = 0
    with counter:
        fn()
    return counter.n


def _measure(fn, images: int, steps: int, warmup: int = 3, count=None, on_device: bool = True) -> dict:
    """Images/s of fn (each call handles ``images``) and, when it is model work on the device
    (``on_device``), its model FLOPs per image and host reads per call; ``count`` is the same
    work without torch.compile, which the counters cannot see through."""
    img_s = images / _timed(fn, steps, warmup)
    if not on_device:
        return {"img_s": img_s}
    return {"img_s": img_s, "flops_per_img": _flops(count or fn) / images, "host_reads": host_reads(count or fn)}


def _cfg(args):
    from genaug.config import Config

    return Config().model_copy(update={"seed": 0})


# --- GAN -------------------------------------------------------------------------------

def gan_train_genaug(args) -> dict:
    from genaug.data import load_data
    from genaug.generators.gan_train import _d_step, _g_step, _init
    from genaug.training import make_accelerator

    cfg = _cfg(args)
    gc = cfg.gan.model_copy(update={"batch_size": args.batch_size, "mixed_precision": args.precision})
    cfg = cfg.model_copy(update={"gan": gc})
    data = load_data(cfg.data)
    accelerator = make_accelerator(Path("/tmp/genaug_bench"), gc.mixed_precision)
    parts = _init(cfg, data, accelerator)
    x, y = _digits(args.batch_size)
    dev = accelerator.device
    real, y = x.to(dev).float().div(127.5).sub(1), y.to(dev)
    g = torch.Generator(device=dev).manual_seed(0)

    def step():
        _d_step(parts, accelerator, real, y, torch.randn(len(y), gc.z_dim, device=dev, generator=g), g, gc.loss)
        _g_step(parts, accelerator, y, torch.randn(len(y), gc.z_dim, device=dev, generator=g), g, gc.loss)

    return _measure(step, args.batch_size, args.steps)


def gan_train_plain(args) -> dict:
    from genaug.data import load_data
    from genaug.generators.dcgan import d_loss, g_loss
    from genaug.generators.gan_train import build_models

    cfg = _cfg(args)
    G, D = build_models(cfg, load_data(cfg.data))
    dev = _device()
    G, D = G.to(dev), D.to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.gan.lr_g, betas=tuple(cfg.gan.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.gan.lr_d, betas=tuple(cfg.gan.betas))
    x, y = _digits(args.batch_size)
    real, y = x.to(dev).float().div(127.5).sub(1), y.to(dev)

    def step():
        with torch.no_grad():
            fake = G(torch.randn(len(y), cfg.gan.z_dim, device=dev), y)
        logits, _ = D(torch.cat([real, fake]), torch.cat([y, y]))
        loss = d_loss("hinge", *logits.chunk(2))
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        logits, _ = D(G(torch.randn(len(y), cfg.gan.z_dim, device=dev), y), y)
        loss = g_loss("hinge", logits)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    return _measure(step, args.batch_size, args.steps)


def _fp32_only(args) -> None:
    """genaug samples in fp32 (no autocast in ``genaug sample``): a bf16/fp16 table has no sampling rows."""
    if args.precision != "no":
        raise SystemExit(f"sampling runs in fp32 only; --precision {args.precision} does not apply")


def gan_sample(args) -> dict:
    _fp32_only(args)
    from genaug.data import load_data
    from genaug.generators.gan_train import build_models, generate

    cfg = _cfg(args)
    G, _ = build_models(cfg, load_data(cfg.data))
    G = G.to(_device()).eval()
    n = args.samples * 4
    labels = torch.arange(n) % 10
    return _measure(lambda: generate(G, labels, list(range(n)), cfg.gan.z_dim), n, 3, warmup=1)


# --- diffusion ---------------------------------------------------------------------------

def _diffusion_cfg(args):
    cfg = _cfg(args)
    dc = cfg.diffusion.model_copy(update={"batch_size": args.batch_size, "mixed_precision": args.precision})
    return cfg.model_copy(update={"diffusion": dc})


def diffusion_train_genaug(args) -> dict:
    from genaug.data import load_data
    from genaug.generators.diffusion_train import _init, _train_step
    from genaug.training import make_accelerator

    cfg = _diffusion_cfg(args)
    data = load_data(cfg.data)
    accelerator = make_accelerator(Path("/tmp/genaug_bench"), cfg.diffusion.mixed_precision)
    parts = _init(cfg, data, accelerator)
    if args.channels_last:
        parts.unet.to(memory_format=torch.channels_last)
    x, y = _digits(args.batch_size)
    dev = accelerator.device
    x0, y = x.to(dev).float().div(127.5).sub(1), y.to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    parts.unet.train()
    step = lambda: _train_step(parts, accelerator, x0, y, g, cfg.diffusion, data.num_classes)  # noqa: E731
    return {**_measure(step, args.batch_size, args.steps), "params_m": _params(parts.unet)}


def _params(model: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in model.parameters()) / 1e6, 2)


def _unet(args):
    from genaug.generators.diffusion import build_unet, noise_scheduler

    cfg = _diffusion_cfg(args)
    unet = build_unet(cfg.diffusion, num_classes=10, channels=1, image_size=28).to(_device())
    if args.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    return cfg, unet, noise_scheduler(cfg.diffusion)


def diffusion_train_plain(args) -> dict:
    cfg, unet, sched = _unet(args)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.diffusion.lr)
    x, y = _digits(args.batch_size)
    dev = _device()
    x0, y = x.to(dev).float().div(127.5).sub(1), y.to(dev)
    model = torch.compile(unet) if args.compile else unet

    def step(net=model):
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (len(x0),), device=dev)
        pred = net(sched.add_noise(x0, noise, t), t, class_labels=y).sample
        loss = F.mse_loss(pred, sched.get_velocity(x0, noise, t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    unet.train()
    return {**_measure(step, args.batch_size, args.steps, count=lambda: step(unet)), "params_m": _params(unet)}


def _diffusion_sample(args, steps: int) -> dict:
    _fp32_only(args)
    from genaug.generators.diffusion import sample

    cfg, unet, sched = _unet(args)
    unet.eval()
    n = args.samples
    labels = torch.arange(n) % 10
    run = lambda: sample(unet, dict(sched.config), labels, list(range(n)), sampler="dpm++", steps=steps,  # noqa: E731
                         guidance_scale=2.0, batch_size=n)
    return _measure(run, n, 2, warmup=1)


def diffusion_sample_10(args) -> dict:
    return _diffusion_sample(args, 10)


def diffusion_sample_25(args) -> dict:
    return _diffusion_sample(args, 25)


def diffusion_sample_50(args) -> dict:
    return _diffusion_sample(args, 50)


def _peer(args):
    from denoising_diffusion_pytorch.classifier_free_guidance import GaussianDiffusion, Unet

    d = _diffusion_cfg(args).diffusion.block_channels[0]
    model = Unet(dim=d, num_classes=10, dim_mults=(1, 2, 2), channels=1, cond_drop_prob=0.1)
    return model, GaussianDiffusion(model, image_size=28, timesteps=1000, sampling_timesteps=25,
                                    ddim_sampling_eta=0.0).to(_device())


def diffusion_train_peer(args) -> dict:
    model, diffusion = _peer(args)
    opt = torch.optim.AdamW(diffusion.parameters(), lr=2e-4)
    x, y = _digits(args.batch_size)
    x01, y = x.to(_device()).float().div(255), y.to(_device())  # the peer normalises [0, 1] inputs itself

    def step():
        loss = diffusion(x01, classes=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    diffusion.train()
    return {**_measure(step, args.batch_size, args.steps), "params_m": _params(model)}


def peer_sample_25(args) -> dict:
    _fp32_only(args)
    _, diffusion = _peer(args)
    diffusion.eval()
    n = args.samples
    classes = (torch.arange(n) % 10).to(_device())

    def run():
        with torch.no_grad():
            diffusion.sample(classes=classes, cond_scale=2.0, rescaled_phi=0.0)

    return _measure(run, n, 2, warmup=1)


# --- classifier ----------------------------------------------------------------------------

def _eval_data(args):
    from genaug.evaluate.data import EvalData

    x, y = _digits(512)
    from genaug.data.base import Split

    test = Split(images=x[:64].permute(0, 2, 3, 1).numpy(), labels=y[:64].numpy(), ids=[str(i) for i in range(64)])
    return EvalData(classes=[str(i) for i in range(10)], channels=1, size=28, train_x=x, train_y=y, val_x=x[:64],
                    val_y=y[:64], syn_x=x[:0], syn_y=y[:0], test=test, synthetic={})


def classifier_train_genaug(args) -> dict:
    from genaug.classify.budget import row_budget
    from genaug.classify.views import augment
    from genaug.classify.trainer import _train_step, _trainer

    cfg = _cfg(args)
    # shift, not the default RandAugment: the host-side RandAugment has its own case
    # (classifier_input_randaugment), so this one times the model step as it always has
    ec = cfg.eval.model_copy(update={"batch_size": args.batch_size, "mixed_precision": args.precision,
                                     "channels_last": True, "augment": "shift", "model": "resnet_small28"})
    t = _trainer(ec, _eval_data(args), row_budget(ec, 512))
    x, y = _digits(args.batch_size)
    g = torch.Generator().manual_seed(0)
    return _measure(lambda: _train_step(t, augment(x, ec.augment, g), y), args.batch_size, args.steps)


def classifier_train_plain(args) -> dict:
    import timm

    import genaug.models  # noqa: F401  (registers resnet_small28)

    dev = _device()
    model = timm.create_model("resnet_small28", num_classes=10, in_chans=1).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.05)
    x, y = _digits(args.batch_size)
    x, y = x.to(dev).float().div(127.5).sub(1), y.to(dev)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    return _measure(step, args.batch_size, args.steps)


def classifier_input_randaugment(args) -> dict:
    """The classifier loop's host side for one batch with ``eval.augment=randaugment``:
    drawing the batch and augmenting it, which genaug does on the host before each step
    (so on a GPU this caps the loop's images/s whatever the model)."""
    from genaug.classify.views import augment
    from genaug.classify.trainer import _batch, _by_class

    ed = _eval_data(args)
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    pools = (_by_class(ed.syn_y, len(ed.classes)), _by_class(ed.train_y, len(ed.classes)))
    steps = iter(range(1 << 30))

    def run():
        x, _, _ = _batch(ed, next(steps), 0.0, args.batch_size, gens, pools)
        augment(x, "randaugment", gens[2])

    return _measure(run, args.batch_size, args.steps, on_device=False)


def _eval_runs(args, workers: int) -> dict:
    """``--eval-runs`` evaluation runs of ``--eval-steps`` steps (fixed budget), the
    strong arm on 512 MNIST-5k digits: one at a time here, or over ``workers`` processes."""
    from genaug.config import Config
    from genaug.evaluate.arms import ARMS
    from genaug.classify.trainer import train_once
    from genaug.evaluate.workers import Task, run_in_workers

    cfg = Config()
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={
        "steps": args.eval_steps, "augment": "randaugment", "batch_size": args.batch_size,
        "mixed_precision": args.precision})})
    ed = _eval_data(args)
    arm = ARMS["strong"](cfg, ed)
    tasks = [Task("strong", "strong", 0.0, seed, None, {}) for seed in range(args.eval_runs)]
    t0 = time.perf_counter()
    if workers == 1:
        for t in tasks:
            train_once(cfg, ed, t.r, t.seed, arm=arm, quiet=True)
    else:
        run_in_workers(cfg, ed, {"strong": arm}, tasks, workers, lambda t, row: None)
    seconds = time.perf_counter() - t0
    return {"runs_min": 60 * len(tasks) / seconds, "img_s": len(tasks) * args.eval_steps * args.batch_size / seconds,
            "workers": workers}


def eval_runs_one_at_a_time(args) -> dict:
    return _eval_runs(args, 1)


def eval_runs_batched(args) -> dict:
    from genaug.evaluate.workers import resolve_workers

    return _eval_runs(args, resolve_workers("auto", runs=args.eval_runs, steps=10**9))


# --- reference ceiling -----------------------------------------------------------------------

def matmul_ceiling(args) -> dict:
    """FLOP/s of a large square matmul in the benchmark's precision: what this device
    reaches on the friendliest possible work (the CPU's reference for utilisation)."""
    dev = _device()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision, torch.float32)
    n = 8192 if dev.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    return {"flop_s": 2 * n**3 / _timed(lambda: a @ b, 10 if dev.type == "cuda" else 5, warmup=2)}


def datasheet_peak(name: str) -> float | None:
    """Dense bf16 peak FLOP/s of a GPU named ``name``, or None when it is not in the table."""
    return next((tf * 1e12 for key, tf in PEAK_BF16_TFLOPS if key in name), None)


# --- driver ----------------------------------------------------------------------------------

def run_case(name: str, args) -> dict:
    """Run one case in this process and return its numbers plus peak memory."""
    torch.manual_seed(0)
    out = globals()[name](args)
    if torch.cuda.is_available():
        out["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        out["memory"] = "GPU allocated"
    else:
        out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        out["memory"] = "process RSS"
    return out


def child(name: str, args, env: dict | None = None) -> dict | None:
    """Run one case in a child process (with ``env``, default this one's); None when it fails."""
    cmd = [sys.executable, __file__, "--case", name, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
           "--samples", str(args.samples), "--precision", args.precision, "--eval-runs", str(args.eval_runs),
           "--eval-steps", str(args.eval_steps)]
    cmd += ["--channels-last"] if args.channels_last else []
    cmd += ["--compile"] if args.compile else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{name}: skipped ({last})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})"


ROWS = [  # (what, genaug case, plain-loop case, peer case)
    ("GAN training (DCGAN, batch B)", "gan_train_genaug", "gan_train_plain", None),
    ("diffusion training (UNet, batch B)", "diffusion_train_genaug", "diffusion_train_plain", "diffusion_train_peer"),
    ("GAN sampling", "gan_sample", None, None),
    ("diffusion sampling, DPM++ 10 steps, w=2", "diffusion_sample_10", None, None),
    ("diffusion sampling, DPM++ 25 steps, w=2 (peer: DDIM 25)", "diffusion_sample_25", None, "peer_sample_25"),
    ("diffusion sampling, DPM++ 50 steps, w=2", "diffusion_sample_50", None, None),
    ("classifier training (resnet_small28, batch B)", "classifier_train_genaug", "classifier_train_plain", None),
    ("classifier input on the host: batch draw + RandAugment (no model)", "classifier_input_randaugment", None, None),
    ("evaluation runs", "eval_runs_one_at_a_time", None, None),  # a table of its own (runs per minute)
]


def _rate(flop_s: float) -> str:
    return f"{flop_s / 1e12:.2f} TFLOP/s" if flop_s >= 1e12 else f"{flop_s / 1e9:.1f} GFLOP/s"


def reference(results: dict[str, list[dict]], args) -> tuple[float | None, str]:
    """The FLOP/s that utilisation is measured against, and a sentence saying what it is."""
    ceiling = [r["flop_s"] for r in results.get("matmul_ceiling") or []]
    measured = f"a {'8192' if torch.cuda.is_available() else '2048'}^2 {args.precision if args.precision != 'no' else 'fp32'} " \
               f"matmul reaches {_rate(statistics.median(ceiling))} here" if ceiling else "no matmul ceiling measured"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else datasheet_peak(name)
        if peak is None:
            return None, f"{name} is not in the datasheet table (pass --peak-tflops); {measured}"
        return peak, f"utilisation = model FLOP/s / the {name} datasheet dense bf16 peak, {_rate(peak)}; {measured}"
    if not ceiling:
        return None, measured
    return statistics.median(ceiling), (f"utilisation = model FLOP/s / this CPU's measured matmul ceiling ({measured}; "
                                        "a VM's vCPUs have no datasheet peak)")


def table(results: dict[str, list[dict]], args) -> str:
    def median(name, key="img_s"):
        return statistics.median(r[key] for r in results[name])

    def cell(name):
        runs = results.get(name) or []
        if not runs:
            return "—"
        v = [r["img_s"] for r in runs]
        spread = f" ({min(v):.1f}-{max(v):.1f})" if len(v) > 1 else ""
        return f"{statistics.median(v):.1f}{spread}, {max(r['peak_mb'] for r in runs)} MB"

    def ratio(a, b):
        if not results.get(a) or not results.get(b):
            return "—"
        return f"{median(a) / median(b):.2f}x"

    def used(name):
        if not results.get(name) or "flops_per_img" not in results[name][0]:
            return "—"
        achieved = median(name) * median(name, "flops_per_img")
        return _rate(achieved) + (f" = {100 * achieved / peak:.1f}%" if peak else "")

    def reads(name):
        counts = {r["host_reads"] for r in results.get(name) or [] if "host_reads" in r}
        return "/".join(str(c) for c in sorted(counts)) or "—"

    peak, ref_line = reference(results, args)
    flags = [f"--precision {args.precision}"] + (["--channels-last"] if args.channels_last else []) + \
            (["--compile"] if args.compile else []) + ([f"--peak-tflops {args.peak_tflops:g}"] if args.peak_tflops else []) + \
            ([f"--cases {' '.join(args.cases)}"] if list(getattr(args, "cases", CASES)) != CASES else [])
    mem = next((r[0]["memory"] for r in results.values() if r and "memory" in r[0]), "peak memory")
    ran_eval = any(results.get(c) for c in ("eval_runs_one_at_a_time", "eval_runs_batched"))
    eval_flags = f" --eval-runs {args.eval_runs} --eval-steps {args.eval_steps}" if ran_eval else ""
    lines = [
        f"Device: {device_name()}. Date: {datetime.date.today().isoformat()}. Runs: {args.repeats} per cell "
        f"(median, min-max). B = {args.batch_size}. Command: `python scripts/bench_speed.py --repeats {args.repeats} "
        f"--steps {args.steps} --batch-size {args.batch_size} --samples {args.samples}{eval_flags} {' '.join(flags)}`",
        "",
        f"Model FLOPs per image are counted by torch.utils.flop_counter (matmuls and convolutions, forward and "
        f"backward); {ref_line}. Host reads: how often one training step (or one sampling call) reads a "
        "tensor's value back to the host (.item(), float(), bool(), nonzero()); on a GPU each is a sync that "
        "stalls the queue (counted by a torch dispatch mode, so the same count on any device; the optimisers' "
        "CPU step counters left out).",
        "",
        f"| loop | genaug images/s, peak {mem} | plain PyTorch loop, same model | denoising-diffusion-pytorch "
        "| genaug / plain | genaug / peer | genaug model FLOP/s, utilisation | genaug host reads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if all(c.startswith("eval_runs") for c in getattr(args, "cases", CASES)):
        lines = lines[:1]  # the runs-per-minute table alone: no per-loop table, no FLOP/s
    for what, ours, plain, peer in ROWS if len(lines) > 1 else ():
        if ours.startswith("eval_runs"):
            continue
        if not any(results.get(case) for case in (ours, plain, peer) if case):
            continue  # not among --cases, or every run of it failed
        lines.append(f"| {what} | {cell(ours)} | {cell(plain) if plain else '—'} | {cell(peer) if peer else '—'} | "
                     f"{ratio(ours, plain) if plain else '—'} | {ratio(ours, peer) if peer else '—'} | {used(ours)} | "
                     f"{reads(ours)} |")
    if results.get("eval_runs_one_at_a_time") and results.get("eval_runs_batched"):
        runs = lambda name: [r["runs_min"] for r in results[name]]
        spread = lambda v: f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})" if len(v) > 1 else f"{v[0]:.2f}"
        one, many = runs("eval_runs_one_at_a_time"), runs("eval_runs_batched")
        lines += ["", f"Evaluation runs per minute ({args.eval_runs} runs of {args.eval_steps} steps x B, the default "
                  "classifier with RandAugment, val checks and test metrics; same steps both ways):", "",
                  "| one at a time (one process, all cores' threads) | batched (worker processes) | batched / one at a time |",
                  "|---|---|---|",
                  f"| {spread(one)} | {spread(many)} ({results['eval_runs_batched'][0]['workers']} processes) | "
                  f"{statistics.median(many) / statistics.median(one):.2f}x |"]
    params = {k: results[k][0].get("params_m") for k in ("diffusion_train_genaug", "diffusion_train_peer") if results.get(k)}
    if params:
        lines += ["", "UNet parameters: " + ", ".join(f"{k.replace('diffusion_train_', '')} {v}M" for k, v in params.items())]
    return "\n".join(lines)


def marker(args) -> str:
    """BENCHMARKS.md section of this device and these options: bench_speed_cpu,
    bench_speed_gpu_bf16_channels-last_compile, ... so before/after tables sit side by side;
    the evaluation-runs cases alone write bench_speed_<device>_eval-runs."""
    options = ([args.precision] if args.precision != "no" else []) + (["channels-last"] if args.channels_last else []) \
        + (["compile"] if args.compile else []) \
        + ([f"eval-runs_b{args.batch_size}"] if all(c.startswith("eval_runs") for c in getattr(args, "cases", CASES))
           else [])
    return "_".join(["bench_speed", "gpu" if torch.cuda.is_available() else "cpu", *options])


def write_section(path: Path, text: str, marker: str) -> None:
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S) if begin in old \
        else old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> str | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per run (after 3 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--samples", type=int, default=64, help="images per diffusion sampling call")
    ap.add_argument("--eval-runs", type=int, default=6, help="evaluation runs per eval_runs_* case")
    ap.add_argument("--eval-steps", type=int, default=300, help="steps of each evaluation run")
    ap.add_argument("--precision", choices=["no", "bf16", "fp16"], default="no")
    ap.add_argument("--channels-last", action="store_true", help="diffusion UNet in channels-last memory format")
    ap.add_argument("--compile", action="store_true", help="torch.compile the plain diffusion loop's UNet")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the GPU's dense bf16 peak, when it is not in the datasheet table")
    ap.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write", default=None, help="markdown file whose bench_speed section is replaced")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return None
    results: dict[str, list[dict]] = {name: [] for name in args.cases}
    for rep in range(args.repeats):
        for name in args.cases:
            row = child(name, args)
            if row:
                results[name].append(row)
                rate = f"{row['img_s']:.1f} img/s" if "img_s" in row else _rate(row["flop_s"])
                rate += f", {row['runs_min']:.2f} runs/min" if "runs_min" in row else ""
                print(f"run {rep + 1}/{args.repeats} {name}: {rate}, {row['peak_mb']} MB", file=sys.stderr)
    text = table(results, args)
    print(text)
    if args.write:
        write_section(Path(args.write), text, marker(args))
    return text


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main(sys.argv[1:])

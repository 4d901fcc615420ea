"""Run genaug stages as real subprocesses on the smoke config (used by the crash,
write-failure and multi-process tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
GAN = ["gan.steps=12", "gan.checkpoint_every=3", "gan.eval_every=6", "gan.log_every=1"]
DIFFUSION = ["diffusion.steps=12", "diffusion.checkpoint_every=3", "diffusion.eval_every=6", "diffusion.log_every=1"]
SAMPLE = ["sample.per_class=6", "sample.batch_size=8", "sample.filter=false"]
EVAL = ["eval.model=resnet_small28", "eval.steps=20", "eval.eval_every=10", "eval.seeds=2", "eval.mix=0.5"]
VOLATILE = {"img_per_s", "seconds", "finished"}  # wall-clock fields, different in every run


def genaug(base: Path, *args: str, fault: str | None = None, sets: list[str] = (), preexec=None) -> subprocess.CompletedProcess:
    """``python -m genaug ARGS`` on the smoke config with outputs under ``base``."""
    # One thread, like each process of tests/test_ddp.py: CPU kernels may sum in another
    # order with another thread count, and these tests compare outputs exactly.
    env = {**os.environ, "GENAUG_CACHE": str(base / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("GENAUG_FAULT", None)
    if fault:
        env["GENAUG_FAULT"] = fault
    cmd = [sys.executable, "-m", "genaug", *args, "--config", str(SMOKE),
           "--set", f"paths.runs_dir={base}/runs", "--set", f"paths.gen_dir={base}/gen"]
    for kv in [*GAN, *DIFFUSION, *SAMPLE, *EVAL, *sets]:
        cmd += ["--set", kv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600, preexec_fn=preexec)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """Every stage run once, one process, no faults: what a crashed-then-rerun or a
    multi-process run must equal."""
    base = tmp_path_factory.mktemp("reference")
    for cmd in ("train-gan", "sample", "eval-classifier", "train-diffusion"):
        ok(genaug(base, cmd))
    return base

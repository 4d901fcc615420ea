"""Two CPU processes through ``accelerate launch`` give what one process gives (issue #9).

train-gan / train-diffusion: one global batch split across ranks, rank 0 logs once
per step. sample: the ranks split the classes; the manifest equals the one-process
manifest (no duplicate or missing ids). eval-classifier: the ranks split the
(r, seed) runs; the rows equal the one-process rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genaug.generators import load_generator
from genaug.io import read_jsonl

from stages import DIFFUSION, EVAL, GAN, ROOT, SAMPLE, SMOKE, VOLATILE

pytestmark = pytest.mark.slow


def launch(base: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "genaug", *args, "--config", str(SMOKE),
           "--set", f"paths.runs_dir={base}/runs", "--set", f"paths.gen_dir={base}/gen"]
    for kv in [*GAN, *DIFFUSION, *SAMPLE, *EVAL]:
        cmd += ["--set", kv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENAUG_CACHE": str(base / "cache")}
    env.pop("GENAUG_FAULT", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def copy(reference: Path, base: Path, *rels: str) -> Path:
    for rel in rels:
        shutil.copytree(reference / rel, base / rel)
    return base


def test_train_diffusion_with_two_processes(tmp_path):
    """(train-gan's two-process run is tests/test_gan.py::test_accelerate_launch_two_cpu_processes.)"""
    launch(tmp_path, "train-diffusion")
    out = tmp_path / "runs/smoke/diffusion"
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 13))  # once per step, not per rank
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0000009", "step_0000012"]
    load_generator(out / "best")
    assert json.loads((out / "last/genaug.json").read_text())["step"] == 12


def test_sample_sharded_over_two_processes_equals_one(reference, tmp_path):
    base = copy(reference, tmp_path, "runs/smoke/gan", "runs/smoke/judge")
    launch(base, "sample")
    got, want = read_jsonl(base / "gen/smoke/manifest.jsonl"), read_jsonl(reference / "gen/smoke/manifest.jsonl")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) and ids == [r["id"] for r in want]
    for r in got + want:
        r["generator"].pop("path")  # each test samples its own copy of the checkpoint
    assert got == want
    files = sorted(str(p.relative_to(base / "gen/smoke")) for p in (base / "gen/smoke").rglob("*.png"))
    assert files == sorted(r["path"] for r in want)


def test_eval_split_over_two_processes_equals_one(reference, tmp_path):
    base = copy(reference, tmp_path, "runs/smoke/gan", "runs/smoke/judge", "gen/smoke")
    launch(base, "eval-classifier")
    out, ref = base / "runs/smoke/eval", reference / "runs/smoke/eval"

    def rows(path: Path) -> list[dict]:
        return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in read_jsonl(path)),
                      key=lambda r: (r["mix"], r["seed"]))

    got = rows(out / "rows.jsonl")
    assert [(r["mix"], r["seed"]) for r in got] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]  # each run once
    assert got == rows(ref / "rows.jsonl")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"][-1]["gain_acc"] == json.loads((ref / "metrics.json").read_text())["settings"][-1]["gain_acc"]

"""Crashes and write failures are tested features (issue #9; tests/README.md lists them).

Each case runs a real ``python -m genaug`` command with ``GENAUG_FAULT`` naming a
fault point (genaug/faults.py): the process SIGKILLs itself there, or gets the OSError
of a full disk / read-only file system. Then the same command runs again, and its
outputs must equal those of an uninterrupted run: no missing or duplicated manifest
lines, metric rows or classifier rows, no temp files left behind.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from genaug.io import TEMP_PATTERNS, read_jsonl

from stages import VOLATILE, genaug, ok


def killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, f"not killed at the fault point (exit {proc.returncode}): " + proc.stderr[-2000:]


def temp_files(base: Path) -> list[Path]:
    return sorted({p for pattern in TEMP_PATTERNS for p in base.rglob(pattern) if "cache" not in p.parts})


def rows_without(path: Path, volatile=VOLATILE) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in volatile} for r in read_jsonl(path)]


def weights(path: Path) -> dict:
    return load_file(str(path))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


def seeded_copy(reference: Path, tmp_path: Path, *keep: str) -> Path:
    """A fresh base holding only the reference outputs named in ``keep`` (e.g. ``runs/smoke/gan``)."""
    for rel in keep:
        shutil.copytree(reference / rel, tmp_path / rel, symlinks=True)
    for name in ("config.yaml", "splits.json"):
        if (reference / "runs/smoke" / name).is_file():
            shutil.copy2(reference / "runs/smoke" / name, tmp_path / "runs/smoke" / name)
    return tmp_path


# --- generators: SIGKILL, then --resume ----------------------------------------------

TRAIN_POINTS = ["step@5", "checkpoint@2", "append@4", "write@6"]


def check_training(base: Path, reference: Path, section: str) -> None:
    out, ref = base / "runs/smoke" / section, reference / "runs/smoke" / section
    assert rows_without(out / "metrics.jsonl") == rows_without(ref / "metrics.jsonl")  # none missing, none twice
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step_0000009", "step_0000012"]
    for which in ("best", "last"):
        meta = json.loads((out / which / "genaug.json").read_text())
        assert meta["step"] == json.loads((ref / which / "genaug.json").read_text())["step"]
    assert not temp_files(base)


@pytest.mark.slow
@pytest.mark.parametrize("point", TRAIN_POINTS)
def test_train_gan_killed_then_resumed_equals_uninterrupted(reference, tmp_path, point):
    killed(genaug(tmp_path, "train-gan", fault=point))
    ok(genaug(tmp_path, "train-gan", "--resume"))
    check_training(tmp_path, reference, "gan")
    assert same_weights(tmp_path / "runs/smoke/gan/last/model.safetensors",
                        reference / "runs/smoke/gan/last/model.safetensors")  # resumption is exact


@pytest.mark.slow
@pytest.mark.parametrize("point", TRAIN_POINTS)
def test_train_diffusion_killed_then_resumed_equals_uninterrupted(reference, tmp_path, point):
    killed(genaug(tmp_path, "train-diffusion", fault=point))
    ok(genaug(tmp_path, "train-diffusion", "--resume"))
    check_training(tmp_path, reference, "diffusion")


# --- sample: SIGKILL, then the same command ------------------------------------------

def manifest(base: Path) -> list[dict]:
    """Manifest rows without the generator's folder (each test has its own copy)."""
    rows = read_jsonl(base / "gen/smoke/manifest.jsonl")
    for r in rows:
        r["generator"].pop("path")
    return rows


SCORES = ("confidence", "feature_distance", "nn_distance", "realism")


def same_rows(got: list[dict], want: list[dict]) -> bool:
    """Equal rows, except that scores may differ in the last digits: an image redrawn
    after a crash is scored in a smaller batch, and CPU kernels are not bit-identical
    across batch sizes."""
    for a, b in zip(got, want, strict=True):
        if {k: v for k, v in a.items() if k not in SCORES} != {k: v for k, v in b.items() if k not in SCORES}:
            return False
        if any(a[k] != pytest.approx(b[k], rel=1e-4, abs=1e-5) for k in SCORES if k in b):
            return False
    return True


def check_sample(base: Path, reference: Path) -> None:
    got, want = manifest(base), manifest(reference)
    assert [r["id"] for r in got] == [r["id"] for r in want]  # each line once, none missing
    assert same_rows(got, want)  # same seeds, decisions and paths; scores equal up to float noise
    files = sorted(str(p.relative_to(base / "gen/smoke")) for p in (base / "gen/smoke").rglob("*.png"))
    assert files == sorted(r["path"] for r in want)  # every line has its PNG, no PNG without a line
    assert json.loads((base / "gen/smoke/fidelity.json").read_text())["classes"].keys() == \
        json.loads((reference / "gen/smoke/fidelity.json").read_text())["classes"].keys()
    assert not temp_files(base)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["write@25", "append@13", "finalise@1", "write@45"])
def test_sample_killed_then_rerun_equals_uninterrupted(reference, tmp_path, point):
    base = seeded_copy(reference, tmp_path, "runs/smoke/gan", "runs/smoke/judge")
    killed(genaug(base, "sample", fault=point))
    ok(genaug(base, "sample"))
    check_sample(base, reference)


# --- eval-classifier -----------------------------------------------------------------

def check_eval(base: Path, reference: Path) -> None:
    out, ref = base / "runs/smoke/eval", reference / "runs/smoke/eval"
    got = rows_without(out / "rows.jsonl")
    assert sorted((r["mix"], r["seed"]) for r in got) == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1)]
    assert sorted(got, key=lambda r: (r["mix"], r["seed"])) == \
        sorted(rows_without(ref / "rows.jsonl"), key=lambda r: (r["mix"], r["seed"]))  # paired runs are exact
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"][-1]["gain_acc"] == json.loads((ref / "metrics.json").read_text())["settings"][-1]["gain_acc"]
    assert same_weights(out / "models/r0.5_seed0.safetensors", ref / "models/r0.5_seed0.safetensors")
    assert not temp_files(base)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["step@30", "append@2", "write@2", "write@4"])
def test_eval_killed_then_rerun_equals_uninterrupted(reference, tmp_path, point):
    base = seeded_copy(reference, tmp_path, "runs/smoke/gan", "runs/smoke/judge", "gen/smoke")
    killed(genaug(base, "eval-classifier", fault=point))
    ok(genaug(base, "eval-classifier"))
    check_eval(base, reference)


# --- pipeline ------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("point", ["stage@1", "stage@2", "stage@3", "step@20", "append@30"])
def test_pipeline_killed_then_rerun_completes(reference, tmp_path, point):
    killed(genaug(tmp_path, "pipeline", fault=point))
    ok(genaug(tmp_path, "pipeline"))
    stamps = json.loads((tmp_path / "runs/smoke/pipeline.json").read_text())
    assert set(stamps) == {"train", "sample", "eval", "report"}
    check_training(tmp_path, reference, "gan")
    check_sample(tmp_path, reference)
    check_eval(tmp_path, reference)
    assert (tmp_path / "runs/smoke/report.html").stat().st_size > 10_000
    again = ok(genaug(tmp_path, "pipeline"))
    assert again.stdout.count("skipped") == 4


# --- disk full, read-only, file-size limit -------------------------------------------

def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert all(n in errors[0] for n in needles), errors[0]


@pytest.mark.parametrize("fault, needles", [
    ("write@6:enospc", ["cannot write", "No space left on device", "Free some disk space"]),
    pytest.param("append@3:enospc", ["metrics.jsonl", "No space left on device"], marks=pytest.mark.slow),
    ("checkpoint@1:enospc", [".tmp_step_0000003", "No space left on device"]),
    pytest.param("write@2:erofs", ["Read-only file system", "writable folder"], marks=pytest.mark.slow),
])
def test_write_failure_in_training_is_one_line_and_leaves_nothing_half_written(tmp_path, fault, needles):
    one_line_error(genaug(tmp_path, "train-gan", fault=fault), *needles)
    assert not temp_files(tmp_path)
    metrics = tmp_path / "runs/smoke/gan/metrics.jsonl"
    assert not metrics.exists() or metrics.read_bytes().endswith(b"\n")  # no torn line
    ok(genaug(tmp_path, "train-gan", "--resume"))  # then the same run completes
    assert [r["step"] for r in read_jsonl(metrics)] == list(range(1, 13))


@pytest.mark.slow
def test_write_failure_while_sampling_then_rerun(reference, tmp_path):
    base = seeded_copy(reference, tmp_path, "runs/smoke/gan", "runs/smoke/judge")
    one_line_error(genaug(base, "sample", fault="write@20:enospc"), "No space left on device")
    assert not temp_files(base)
    ok(genaug(base, "sample"))
    check_sample(base, reference)


def test_real_file_size_limit_is_a_clear_error(tmp_path):
    """A real OS-level write failure, no injection: RLIMIT_FSIZE makes every write past
    64 KiB fail with EFBIG (Python ignores SIGXFSZ), as a full disk would fail."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    one_line_error(genaug(tmp_path, "train-gan", preexec=limit), "File too large", "ulimit -f")
    assert not temp_files(tmp_path)
    ok(genaug(tmp_path, "train-gan", "--resume"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions (the erofs injection covers it)")
def test_read_only_runs_dir_is_a_clear_error(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o555)
    try:
        one_line_error(genaug(tmp_path, "train-gan"), "Permission denied")
    finally:
        (tmp_path / "runs").chmod(0o755)

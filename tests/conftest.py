"""Shared fixtures: tiny ImageFolders made on the fly, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genaug.cli import cli
from stages import reference  # noqa: F401  (a session fixture: the smoke stages run once, one process)


def write_image(path: Path, *, size=(16, 16), mode="L", seed=0, fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode, 3)
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    img = Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode="L" if channels == 1 else ("RGBA" if channels == 4 else "RGB"))
    if mode not in ("L", "RGB", "RGBA"):
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def make_imagefolder(root: Path, classes=("cat", "dog"), per_class=6, **kw) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / f"{i}.png", seed=100 * c + i, **kw)
    return root


@pytest.fixture
def imagefolder(tmp_path) -> Path:
    return make_imagefolder(tmp_path / "folder")


def one_line_error(result, *needles: str) -> str:
    """Assert a CLI result failed with one ``Error:`` line holding every needle (a planned
    command prints the data's fingerprint and plan first: that block is skipped)."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    if lines[0].startswith("fingerprint: "):  # genaug.plan.describe_plan
        lines = lines[next(i for i, ln in enumerate(lines) if ln.startswith(("plan", "estimated"))) + 1:]
        lines = [ln for ln in lines if not ln.startswith(("  ", "estimated"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns click's Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), catch_exceptions=True)

    return invoke


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never read or write the user's real cache from tests."""
    monkeypatch.setenv("GENAUG_CACHE", str(tmp_path / "cache"))
    # The plan's time estimate times a few steps of every model: seconds per command, so
    # tests skip it; tests/test_plan.py turns it on where it is the subject.
    monkeypatch.setenv("GENAUG_NO_ESTIMATE", "1")
    # Tests never reach the network: huggingface_hub reads HF_HUB_OFFLINE when imported,
    # so the constant is set too (else a hub id waits ~20 s for a connection to fail).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def kill_after(args: list[str], marker: Path, timeout: float = 240) -> None:
    """Start ``python -m genaug ARGS``, SIGKILL it as soon as ``marker`` exists, and
    check it really was still running (so the kill interrupted it)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "genaug", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[0].decode()[-2000:]
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

"""genaug pipeline / report: cached stages, --force, --from, crash + rerun (SPEC §6)."""

import json
import re
import time
from pathlib import Path

import pytest

from genaug import pipeline
from genaug.config import load_config
from genaug.io import read_jsonl

from conftest import kill_after

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"
FAST = ["sample.filter=false", "sample.per_class=3", "eval.model=resnet_small28", "eval.steps=6", "eval.eval_every=3",
        "eval.seeds=2"]


def cfg_for(tmp_path, *extra):
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen", *FAST, *extra])


def test_pipeline_runs_then_skips_then_forces(tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path)
    assert pipeline.run_pipeline(cfg) == dict.fromkeys(pipeline.STAGES, "ran")
    run = cfg.run_dir()
    for path in ("gan/best/genaug.json", "eval/metrics.json", "report.html", "report.md", "pipeline.json"):
        assert (run / path).is_file(), path
    assert (cfg.gen_dir() / "fidelity.json").is_file()
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "paired gain" in html and "genaug pipeline --config" in html
    # the three rows and the oracle, and an answer that names the strong baseline and the oracle share
    for row in ("naive real-only", "strong real-only (baseline)", "+ synthetic", "oracle (held-out real)"):
        assert row in html, row
    answer = html.split("Answer", 1)[1].split("<h2", 1)[0]
    assert "strong real-only baseline" in answer and "share of that possible gain" in answer
    assert all((run / m).is_file() for m in re.findall(r"\]\((report_assets/[^)]+)\)", (run / "report.md").read_text()))
    # Grad-CAM: the first seed's weights are kept for r = 0 and r = 0.3 and the panel is drawn from them
    assert (run / "eval" / "models" / "strong_r0_seed0.safetensors").is_file()
    assert (run / "eval" / "models" / "synthetic_r0.3_seed0.safetensors").is_file()
    assert "Grad-CAM" in html and (run / "report_assets" / "gradcam.png").is_file()

    def boom(*a, **k):
        raise AssertionError("a stage ran again")

    with monkeypatch.context() as m:
        for stage in pipeline.STAGES:
            m.setitem(pipeline.RUNNERS, stage, boom)
        t0 = time.perf_counter()
        assert pipeline.run_pipeline(cfg) == dict.fromkeys(pipeline.STAGES, "skipped")
        assert time.perf_counter() - t0 < 5

    changed = cfg_for(tmp_path, "eval.steps=8")
    assert pipeline.run_pipeline(changed) == {"train": "skipped", "sample": "skipped", "eval": "ran", "report": "ran"}
    assert pipeline.run_pipeline(changed, from_stage="sample") == {"train": "skipped", "sample": "ran", "eval": "ran",
                                                                   "report": "ran"}
    old_mtime = (run / "gan" / "best" / "genaug.json").stat().st_mtime_ns
    assert pipeline.run_pipeline(changed, force=True) == dict.fromkeys(pipeline.STAGES, "ran")
    assert (run / "gan" / "best" / "genaug.json").stat().st_mtime_ns != old_mtime
    steps = [r["step"] for r in read_jsonl(run / "gan" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.gan.steps  # retrained from scratch, not appended


@pytest.mark.parametrize("marker", [  # a kill mid-GAN is also tests/test_gan.py's subject: slow here
    pytest.param("runs/smoke/gan/checkpoints/step_0000003", marks=pytest.mark.slow), "runs/smoke/eval/rows.jsonl"])
def test_sigkill_mid_pipeline_then_rerun_completes(tmp_path, marker):
    args = ["pipeline", "--config", str(SMOKE), "--set", f"paths.runs_dir={tmp_path}/runs",
            "--set", f"paths.gen_dir={tmp_path}/gen", *[x for kv in FAST for x in ("--set", kv)],
            "--set", "eval.steps=40", "--set", "eval.eval_every=20"]
    kill_after(args, tmp_path / marker)
    cfg = cfg_for(tmp_path, "eval.steps=40", "eval.eval_every=20")
    result = pipeline.run_pipeline(cfg)
    assert result["report"] == "ran"
    stamps = json.loads((cfg.run_dir() / "pipeline.json").read_text())
    assert set(stamps) == set(pipeline.STAGES)
    rows = read_jsonl(cfg.run_dir() / "eval" / "rows.jsonl")
    assert sorted((r["arm"], r["mix"], r["seed"]) for r in rows) == [
        (arm, r, s) for arm, r in (("naive", 0.0), ("oracle", 0.3), ("strong", 0.0), ("synthetic", 0.3)) for s in (0, 1)]
    steps = [r["step"] for r in read_jsonl(cfg.run_dir() / "gan" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.gan.steps  # resumed: no duplicated or missing rows
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*.tmp"))

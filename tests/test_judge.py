"""The judge is a configuration of the one classifier trainer (STYLE 9, issue 29)."""

from __future__ import annotations

from pathlib import Path

import torch

from genaug.classify.streams import Arm
from genaug.classify.trainer import fit
from genaug.config import load_config
from genaug.data import load_data
from genaug.io import load_tensors
from genaug.judge import _judge_spec, _judge_streams, accuracy, judge_config, load_judge, train_judge

SMOKE = Path(__file__).parents[1] / "configs" / "smoke.yaml"


def _cfg(tmp_path, *extra):
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", "judge.steps=12", "judge.eval_every=4", *extra])


def test_judge_is_the_trainers_run_with_the_judge_configuration(tmp_path):
    cfg = _cfg(tmp_path)
    data = load_data(cfg.data)
    meta = train_judge(cfg, data, tmp_path / "judge")
    direct = fit(judge_config(cfg), _judge_streams(data), 0.0, cfg.seed, Arm("judge", "judge", "", "uniform", "shift"),
                 spec=_judge_spec(data), quiet=True)
    saved = load_tensors(tmp_path / "judge" / "model.safetensors")
    assert saved.keys() == direct.state.keys()
    assert all(torch.equal(saved[k], direct.state[k].cpu()) for k in saved)  # the same run, bit for bit
    assert meta["val_accuracy"] == direct.row["val_acc"] and direct.row["best_step"] in (4, 8, 12)
    model, _ = load_judge(tmp_path / "judge")  # read back through to_input: the convention it trained with
    n = len(data.splits["val"])  # contiguous weights at inference vs channels-last in training: last-bit differences
    assert abs(accuracy(model, data.splits["val"], data.channels) - meta["val_accuracy"]) <= 2 / n
    ec = judge_config(cfg).eval
    assert (ec.model, ec.steps, ec.lr, ec.ema, ec.augment) == (cfg.judge.model, 12, cfg.judge.lr, False, "shift")


def test_judge_without_a_val_split_keeps_its_last_weights_and_says_so(tmp_path, capsys):
    from genaug.judge import ensure_judge

    cfg = _cfg(tmp_path, "data.val_fraction=0")
    data = load_data(cfg.data)
    assert len(data.splits["val"]) == 0
    ensure_judge(cfg, data)
    assert "val accuracy n/a (no val split: the last weights kept)" in capsys.readouterr().out
    model, meta = load_judge(cfg.run_dir() / "judge")
    assert meta["val_accuracy"] is None and model is not None

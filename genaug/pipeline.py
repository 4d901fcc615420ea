"""``genaug pipeline``: train -> sample/filter -> eval -> report (SPEC §6).

Each stage has a hash of the config it depends on plus its upstream stage's hash. When
a stage finishes, its hash is stamped in ``runs/<run>/pipeline.json``; a later run skips
a stage whose stamp matches and whose outputs exist. An interrupted stage resumes: the
trainer from its newest checkpoint, sampling and evaluation from what their files
already hold.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

from genaug.config import Config
from genaug.errors import GenaugError
from genaug.faults import fault_point
from genaug.io import atomic_write_json, stable_hash
from genaug.runs import config_hash

STAGES = ("train", "sample", "eval", "report")
SAMPLER_SECTION = {"diffusion": "diffusion", "img2img": "img2img"}  # config sections a kind's sampling depends on


def stage_hashes(cfg: Config) -> dict[str, str]:
    kind = cfg.sample.generator
    train = config_hash(cfg, "data", kind, "seed", "judge", *(("pool",) if cfg.data.unlabeled else ()))
    if cfg.data.unlabeled and cfg.pool.labeler == "fixmatch":  # the evaluation's learner labels the pool
        from genaug.evaluate.learner import learner_key

        train = stable_hash({"train": train, "learner": learner_key(cfg)})  # row choices (eval.mix, ...) do not count
    sampler = getattr(cfg, SAMPLER_SECTION[kind]).model_dump(mode="json") if kind in SAMPLER_SECTION else {}
    sample = stable_hash({"train": train, "sample": cfg.sample.model_dump(mode="json"), "sampler": sampler,
                          "gen_dir": cfg.paths.gen_dir})
    evaluation = stable_hash({"sample": sample, "eval": cfg.eval.model_dump(mode="json", exclude={"workers"})})
    return {"train": train, "sample": sample, "eval": evaluation, "report": stable_hash({"eval": evaluation, "v": 1})}


class Stamps:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def matches(self, stage: str, digest: str) -> bool:
        return self.data.get(stage, {}).get("hash") == digest

    def set(self, stage: str, digest: str, seconds: float) -> None:
        self.data[stage] = {"hash": digest, "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(self.path, self.data)

    def drop(self, stages: list[str]) -> None:
        for s in stages:
            self.data.pop(s, None)
        atomic_write_json(self.path, self.data)


def _outputs_exist(cfg: Config, stage: str) -> bool:
    kind = cfg.sample.generator
    return {
        "train": lambda: TRAINERS[kind].outputs(cfg).is_file(),
        "sample": lambda: (cfg.gen_dir() / "fidelity.json").is_file(),
        "eval": lambda: (cfg.run_dir() / "eval" / "metrics.json").is_file(),
        "report": lambda: (cfg.run_dir() / "report.html").is_file(),
    }[stage]()


def _wipe(cfg: Config, stage: str) -> None:
    """Delete a stage's outputs before a forced rerun."""
    targets = {"train": [cfg.run_dir() / cfg.sample.generator, cfg.run_dir() / "judge"], "sample": [cfg.gen_dir()],
               "eval": [cfg.run_dir() / "eval"], "report": [cfg.run_dir() / "report_assets"]}[stage]
    for t in targets:
        shutil.rmtree(t, ignore_errors=True)


class Trainer:
    """How the train stage makes a kind's generator, and the file that says it is done."""

    def __init__(self, train: Callable[[Config, bool], None], outputs: Callable[[Config], Path]):
        self.train, self.outputs = train, outputs


def _trained(module: str, fn: str) -> Callable[[Config, bool], None]:
    def train(cfg: Config, resume: bool) -> None:
        from genaug.quality import gate_after_training

        gate_after_training(cfg, getattr(importlib.import_module(module), fn)(cfg, resume=resume))

    return train


def _judge_only(cfg: Config, resume: bool) -> None:
    """A pretrained generator (img2img) trains nothing; the judge its filters need is trained here."""
    from genaug.data import load_data
    from genaug.judge import ensure_judge
    from genaug.runs import save_splits

    data = load_data(cfg.data)
    save_splits(cfg, data)
    ensure_judge(cfg, data)


TRAINERS: dict[str, Trainer] = {
    "gan": Trainer(_trained("genaug.generators.gan_train", "train_gan"), lambda c: c.run_dir() / "gan/best/genaug.json"),
    "diffusion": Trainer(_trained("genaug.generators.diffusion_train", "train_diffusion"),
                         lambda c: c.run_dir() / "diffusion/best/genaug.json"),
    "img2img": Trainer(_judge_only, lambda c: c.run_dir() / "judge/judge.json"),
}


def _train(cfg: Config) -> None:
    """Train, or resume an interrupted (or shorter) run of the same settings."""
    from genaug.training import checkpoints

    out = cfg.run_dir() / cfg.sample.generator
    resume = bool(checkpoints(out / "checkpoints")) or (out / "metrics.jsonl").exists()
    try:
        TRAINERS[cfg.sample.generator].train(cfg, resume)
    except GenaugError as exc:
        if "cannot resume" in str(exc):
            raise GenaugError(f"{exc}; 'genaug pipeline --force' (or '--from train') retrains from scratch") from None
        raise


def _sample(cfg: Config) -> None:
    from genaug.synthetic.sample import run_sample, summarise_fidelity

    print(summarise_fidelity(run_sample(cfg, replace_stale=True)))  # a retrained generator makes old images stale


def _eval(cfg: Config) -> None:
    from genaug.evaluate.run import evaluate, results_table

    print(results_table(evaluate(cfg)))


def _report(cfg: Config) -> None:
    from genaug.report import write_report

    write_report(cfg)


RUNNERS = {"train": _train, "sample": _sample, "eval": _eval, "report": _report}


def run_pipeline(cfg: Config, *, from_stage: str | None = None, force: bool = False) -> dict:
    """Run the stages in order, skipping up-to-date ones; returns {stage: 'ran'|'skipped'}."""
    from genaug.runs import prepare_run_dir

    prepare_run_dir(cfg)
    stamps = Stamps(cfg.run_dir() / "pipeline.json")
    hashes = stage_hashes(cfg)
    rerun = list(STAGES) if force else list(STAGES[STAGES.index(from_stage):]) if from_stage else []
    for stage in rerun:
        _wipe(cfg, stage)
    stamps.drop(rerun)
    done = {}
    for stage in STAGES:
        if stamps.matches(stage, hashes[stage]) and _outputs_exist(cfg, stage):
            print(f"[{stage}] up to date (config hash {hashes[stage]}), skipped")
            done[stage] = "skipped"
            continue
        print(f"[{stage}] running")
        t0 = time.perf_counter()
        RUNNERS[stage](cfg)
        fault_point("stage")
        stamps.set(stage, hashes[stage], time.perf_counter() - t0)
        print(f"[{stage}] done in {time.perf_counter() - t0:.0f} s")
        done[stage] = "ran"
    return done

"""The run directory (SPEC §8): ``runs/<run>/`` with the resolved config and splits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from genaug.config import Config
from genaug.data.base import LabeledData
from genaug.errors import ConfigError
from genaug.io import atomic_write_bytes, atomic_write_json, atomic_write_text, stable_hash


# Settings added after runs existed, left out of every hash while they hold their "off"
# value, so a run made before them keeps its hashes (its judge, rows and checkpoints stay
# valid); turned on, they change the hash like any other setting.
HASH_NEUTRAL = {"data": {"unlabeled": None, "unlabeled_max": None, "hold_out": 0.0}, "diffusion": {"init_from": None, "long_tail": "none", "cbdm_tau": 1.0},
                "gan": {"long_tail": "none", "gsr_weight": 0.5, "gsr_beta": 0.999}, "eval": {"replace_prob": None},
                "judge": {"self_training": 0, "self_training_threshold": 0.95, "self_training_weight": 1.0},
                "pool": {"labeler": "judge"}}


def hash_dump(cfg: Config) -> dict:
    """The config as JSON for hashing: :data:`HASH_NEUTRAL` keys at their off value left
    out; the ``pool`` section only when a pool is configured."""
    dump = cfg.model_dump(mode="json")
    for section, neutral in HASH_NEUTRAL.items():
        dump[section] = {k: v for k, v in dump[section].items() if not (k in neutral and v == neutral[k])}
    if cfg.data.unlabeled is None:
        dump["pool"] = None
    return dump


def config_hash(cfg: Config, *sections: str) -> str:
    """Hash of the config sections a stage depends on (all when none given)."""
    dump = hash_dump(cfg)
    return stable_hash({k: dump[k] for k in sections} if sections else dump)


def prepare_run_dir(cfg: Config) -> Path:
    """Create ``runs/<run>/`` and save the resolved config there (a ``paths.reuse_from``
    name that holds no run is refused first)."""
    lending_runs(cfg)
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    return run_dir


def save_splits(cfg: Config, data: LabeledData) -> Path:
    """Save split membership (ids and labels per split) as ``runs/<run>/splits.json``."""
    path = cfg.run_dir() / "splits.json"
    atomic_write_json(path, {"data_hash": config_hash(cfg, "data"), **data.membership()})
    return path


def record_in_splits(cfg: Config, name: str, ids: list[str], labels: list[int]) -> Path:
    """Add a named id list (e.g. the oracle's held-out images) to ``runs/<run>/splits.json``."""
    import json

    path = cfg.run_dir() / "splits.json"
    doc = json.loads(path.read_text()) if path.is_file() else {"data_hash": config_hash(cfg, "data")}
    doc[name] = {"ids": ids, "labels": labels}
    atomic_write_json(path, doc)
    return path


def lending_runs(cfg: Config) -> list[Path]:
    """The run directories of ``paths.reuse_from`` (this run itself left out); a name
    that holds no run is a config error, not a silent retrain."""
    runs = []
    for name in cfg.paths.reuse_from:
        run = Path(cfg.paths.runs_dir) / name
        if not run.is_dir():
            raise ConfigError(f"paths.reuse_from names run {name!r}, but {run} does not exist")
        if run.resolve() != cfg.run_dir().resolve():
            runs.append(run)
    return runs


def lend(src: Path, dst: Path, files: Sequence[str]) -> None:
    """Copy ``files`` (relative paths) from run ``src`` to run ``dst``, each atomically and
    in order: the file that marks the result as present goes last."""
    for f in files:
        atomic_write_bytes(dst / f, (src / f).read_bytes())


def reuse_cached(cfg: Config, meta: str, match: dict, also: Sequence[str] = ()) -> bool:
    """Whether this run holds a cached result: the JSON file ``meta`` (relative to the run
    directory) with the entries of ``match`` (its key, and whatever else it must equal)
    and the files ``also``. When it does not, the first run of ``paths.reuse_from`` that
    does lends its copy (``meta`` copied last, so a copy cut short reads as missing).
    Every cached result is keyed by all it depends on, so a copy whose key matches is
    the result this run would compute."""

    def holds(run: Path) -> bool:
        if not (run / meta).is_file() or not all((run / f).is_file() for f in also):
            return False
        try:
            doc = json.loads((run / meta).read_text())
        except (OSError, ValueError):
            return False
        return all(doc.get(k) == v for k, v in match.items())

    if holds(cfg.run_dir()):
        return True
    for src in lending_runs(cfg):
        if holds(src):
            lend(src, cfg.run_dir(), [*also, meta])
            print(f"reused {meta} from run {src.name} (same key)")
            return True
    return False

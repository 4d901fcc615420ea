"""Generator registry and self-describing weights (STYLE §4).

``best/`` and ``last/`` hold ``model.safetensors`` plus ``genaug.json`` with the
architecture name, its constructor arguments, the class names, the step and the
config, so :func:`load_generator` rebuilds the model from those two files alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from genaug.errors import GenaugError
from genaug.generators.dcgan import Generator as DCGANGenerator
from genaug.io import atomic_save_tensors, atomic_write_json, load_tensors, replace_dir, staging_dir

ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"dcgan": DCGANGenerator}
WEIGHTS, META = "model.safetensors", "genaug.json"


def register_architecture(name: str, cls: type[torch.nn.Module]) -> None:
    ARCHITECTURES[name] = cls


def save_generator(model: torch.nn.Module, out_dir: str | Path, *, architecture: str, meta: dict) -> None:
    """Write weights + JSON atomically (temp dir, then rename over the old one)."""
    tmp = staging_dir(out_dir)
    try:
        atomic_save_tensors(tmp / WEIGHTS, model.state_dict())
        atomic_write_json(tmp / META, {"architecture": architecture, "args": model.config, **meta})
    except OSError:  # e.g. disk full: the old directory stays, the half-built one goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)


def load_generator(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a generator from ``genaug.json`` + ``model.safetensors`` (no pickles)."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise GenaugError(f"not a genaug generator checkpoint (no {META}): {path}")
    meta = json.loads(meta_path.read_text())
    arch = meta.get("architecture")
    if arch == "diffusers-unet2d":
        from diffusers import UNet2DModel

        try:  # safetensors only: a pickled diffusion_pytorch_model.bin is never loaded
            return UNet2DModel.from_pretrained(str(path), use_safetensors=True).eval(), meta
        except (OSError, ValueError, EnvironmentError) as exc:
            raise GenaugError(f"{path}: not a loadable diffusers UNet with safetensors weights "
                              f"({(str(exc).splitlines() or [''])[0][:200]})") from None
    if arch not in ARCHITECTURES:
        raise GenaugError(f"{path}: unknown generator architecture {arch!r} (known: {', '.join(ARCHITECTURES)})")
    model = ARCHITECTURES[arch](**meta["args"])
    try:
        model.load_state_dict(load_tensors(path / WEIGHTS))
    except (RuntimeError, OSError) as exc:
        raise GenaugError(f"{path}: weights do not match {arch}{meta['args']}: {str(exc).splitlines()[0]}") from None
    return model.eval(), meta

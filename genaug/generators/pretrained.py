"""Start the class-conditional UNet from a pretrained one (``diffusion.init_from``, SPEC §3).

The source is a diffusers ``UNet2DModel`` directory (``save_pretrained``: config.json +
safetensors; e.g. another run's ``runs/<run>/diffusion/best``) or a hub id (online). Its
class embedding is fitted to this data's C classes + the null class:

* no class embedding (an unconditional UNet): a new one, zero-initialised, so the model
  starts exactly as the pretrained unconditional one and learns the classes by fine-tuning;
* another number of classes (another data set): every new row starts as the source's null
  row (its unconditional embedding) — the source's classes mean nothing here;
* the same classes (same names, e.g. a genaug checkpoint of this data): kept.

Channels and sample size must match the data: the UNet's convolutions and attention
levels were trained for them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DModel

from genaug.errors import GenaugError


def _load(spec: str) -> tuple[UNet2DModel, dict]:
    """The source UNet and what genaug.json says about it (empty for other checkpoints)."""
    path = Path(spec).expanduser()
    local = path.exists()
    if local and not (path / "config.json").is_file():
        raise GenaugError(f"diffusion.init_from={spec}: not a diffusers UNet2DModel directory (no config.json; "
                          "point at a folder written by save_pretrained, e.g. runs/<run>/diffusion/best)")
    try:
        unet = UNet2DModel.from_pretrained(str(path) if local else spec, use_safetensors=True)
    except (OSError, ValueError, EnvironmentError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if local:
            raise GenaugError(f"diffusion.init_from={spec}: not a loadable UNet2DModel with safetensors weights "
                              f"({first})") from None
        raise GenaugError(f"diffusion.init_from={spec}: cannot load it from the Hugging Face hub ({first}); offline, "
                          f"download it where there is a network (huggingface-cli download {spec} --local-dir DIR), "
                          "copy DIR here and set diffusion.init_from=DIR") from None
    meta = json.loads((path / "genaug.json").read_text()) if local and (path / "genaug.json").is_file() else {}
    return unet, meta


def init_unet(spec: str, *, classes: list[str], channels: int, image_size: int) -> tuple[UNet2DModel, dict]:
    """The pretrained UNet with its class embedding fitted to ``classes`` (+ null); and a
    record of what was done, for genaug.json and the report."""
    unet, meta = _load(spec)
    cfg = unet.config
    if cfg.in_channels != channels or cfg.out_channels != channels:
        raise GenaugError(f"diffusion.init_from={spec}: the UNet takes {cfg.in_channels} channel(s), the data has "
                          f"{channels} (set data.channels={cfg.in_channels} or start from another UNet)")
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    if size != image_size:
        raise GenaugError(f"diffusion.init_from={spec}: the UNet was trained at {size}x{size}, the data is "
                          f"{image_size}x{image_size} (set data.image_size={size})")
    if cfg.class_embed_type is not None:
        raise GenaugError(f"diffusion.init_from={spec}: class_embed_type={cfg.class_embed_type!r} is not supported "
                          "(genaug conditions through an nn.Embedding of class ids)")
    want = len(classes) + 1
    dim = unet.time_embedding.linear_2.out_features
    before = cfg.num_class_embeds
    if before is None:
        emb, how = torch.nn.Embedding(want, dim), "created (zero-initialised: starts as the unconditional source)"
        torch.nn.init.zeros_(emb.weight)
    elif before == want and meta.get("classes") == classes:
        emb, how = unet.class_embedding, "kept (same classes)"
    else:
        emb = torch.nn.Embedding(want, dim)
        with torch.no_grad():
            emb.weight.copy_(unet.class_embedding.weight[before - 1].expand(want, dim))  # the source's null row
        how = f"resized from {before} to {want} rows, each starting as the source's null (unconditional) row"
    unet.class_embedding = emb
    unet.register_to_config(num_class_embeds=want)
    info = {"source": spec, "class_embedding": how, "source_classes": meta.get("classes"),
            "source_step": meta.get("step"), "parameters": sum(p.numel() for p in unet.parameters())}
    return unet, info

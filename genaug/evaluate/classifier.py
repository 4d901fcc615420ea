"""timm classifiers for evaluation: creation, input handling, freezing strategies.

Strategies (the question of *what* to fine-tune):

* ``full`` — every parameter.
* ``linear`` — the classifier head only (a linear probe on frozen features).
* ``last_n`` — the last ``eval.last_n`` blocks (timm's coarse ``group_matcher`` groups:
  ResNet stages, ViT / EfficientNet blocks) plus the head.
* ``attention`` — the attention layers (``*.attn.*``) plus the head (ViT-style models).
* ``lora`` — low-rank adapters from ``peft`` on every Linear / Conv2d outside the head;
  the head itself is trained in full.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from timm.models import group_parameters

import genaug.models  # noqa: F401  (registers genaug's small timm models)
from genaug.config import EvalConfig
from genaug.errors import ConfigError


@dataclass
class InputSpec:
    """How uint8 images become model input: size, channels, normalisation."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` -> normalised float ``(B, channels, size, size)``."""
        x = images.float().div(255.0)
        if x.shape[1] != self.channels:
            x = x.mean(1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1)
        if x.shape[-1] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                                align_corners=False)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def pretrained_kwargs(ec: EvalConfig) -> dict:
    """timm ``create_model`` arguments for the configured weights: a local file
    (``pretrained_file``), weights imported with ``genaug weights import``, or timm's hub."""
    from genaug.weights import pretrained_overlay

    if ec.pretrained_file:
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": ec.pretrained_file}}
    if not ec.pretrained:
        return {"pretrained": False}
    overlay = pretrained_overlay(ec.model)
    return {"pretrained": True, **({"pretrained_cfg_overlay": overlay} if overlay else {})}


def create_classifier(ec: EvalConfig, *, num_classes: int, channels: int, data_size: int) -> tuple[torch.nn.Module, InputSpec]:
    """The model and its input spec. Pretrained models keep their own input size and
    normalisation (timm's data config) unless ``eval.image_size`` says otherwise; models
    trained from scratch see the data at its own size."""
    kw = {**pretrained_kwargs(ec), **ec.model_kwargs}
    pretrained = kw["pretrained"]
    size = ec.image_size
    if ec.model.startswith("resnet_small") or ec.model.startswith("resnet_medium"):
        size = size or data_size
        kw["img_size"] = size
    try:
        model = timm.create_model(ec.model, num_classes=num_classes, in_chans=channels, **kw)
    except Exception as exc:  # an unknown name, or a hub download that failed (offline): one clear line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        if pretrained and not ec.pretrained_file and "Unknown model" not in first:
            raise ConfigError(f"pretrained weights for '{ec.model}' could not be loaded ({type(exc).__name__}: {first}); "
                              "offline, import them ('genaug weights import efficientnet-lite0') or set "
                              "eval.pretrained_file") from None
        raise ConfigError(f"eval.model '{ec.model}': {first}") from None
    cfg = timm.data.resolve_data_config({}, model=model)
    if size is None:
        size = cfg["input_size"][-1] if pretrained else data_size
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if len(mean) != channels:  # RGB statistics for a 1-channel model: their average
        mean, std = (sum(mean) / len(mean),) * channels, (sum(std) / len(std),) * channels
    return model, InputSpec(size=size, channels=channels, mean=mean, std=std)


def head_names(model: torch.nn.Module) -> set[str]:
    """Parameter names of the classifier head."""
    head = model.get_classifier()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def apply_strategy(model: torch.nn.Module, ec: EvalConfig) -> torch.nn.Module:
    """Freeze / adapt ``model`` for ``eval.strategy``; returns the model to train
    (a peft wrapper for LoRA)."""
    if ec.strategy == "lora":
        return _lora(model, ec)
    head = head_names(model)
    if ec.strategy == "full":
        train = {n for n, _ in model.named_parameters()}
    elif ec.strategy == "linear":
        train = head
    elif ec.strategy == "last_n":
        groups = [names for _, names in sorted(group_parameters(model, model.group_matcher(coarse=True)).items())]
        body = [g for g in groups if not set(g) <= head]
        if ec.last_n > len(body):
            raise ConfigError(f"eval.last_n={ec.last_n}, but {ec.model} has {len(body)} blocks")
        train = head | {n for g in body[-ec.last_n :] for n in g}
    elif ec.strategy == "attention":
        attn = {n for n, _ in model.named_parameters() if ".attn." in n}
        if not attn:
            raise ConfigError(f"eval.strategy=attention: {ec.model} has no attention layers (try a vit_* model)")
        train = attn | head
    else:
        raise ConfigError(f"unknown eval.strategy '{ec.strategy}'")
    for n, p in model.named_parameters():
        p.requires_grad_(n in train)
    return model


def _lora(model: torch.nn.Module, ec: EvalConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    head_modules = {n.rsplit(".", 1)[0] for n in head_names(model)}
    targets = [n for n, m in model.named_modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and n not in head_modules and n]
    config = LoraConfig(r=ec.lora_rank, lora_alpha=2 * ec.lora_rank, target_modules=targets,
                        modules_to_save=sorted(head_modules), lora_dropout=0.0)
    return get_peft_model(model, config)


def trainable_summary(model: torch.nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{train:,} of {total:,} parameters trained ({100 * train / max(total, 1):.1f}%)"


def load_classifier(ec: EvalConfig, path, key: str | None, *, num_classes: int, channels: int, size: int):
    """(model in eval mode, input spec) from weights an evaluation run saved with
    ``metadata={"key": key}``, or None when they belong to another setting."""
    from safetensors import safe_open

    from genaug.io import load_tensors

    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
    model, spec = create_classifier(ec, num_classes=num_classes, channels=channels, data_size=size)
    model = apply_strategy(model, ec)
    model.load_state_dict(load_tensors(path))
    return model.eval(), spec

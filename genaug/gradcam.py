"""Grad-CAM panels for the report: where the real-only and the augmented classifier look.

``genaug eval-classifier`` keeps the weights of its first seed for every share r
(``eval/models/r<r>_seed<s>.safetensors``). This module rebuilds both classifiers from
the run's config, picks test images on which they disagree (the interesting ones),
and draws the Grad-CAM heat map (``grad-cam`` package) of each model for the true
class. It runs after evaluation, for display only: nothing here feeds back into
training or model selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genaug.config import Config
from genaug.evaluate.classifier import load_classifier
from genaug.classify.trainer import predict

MAX_ROWS = 6


def available() -> str | None:
    """None when Grad-CAM can run, else why not (one line)."""
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        return "the grad-cam package is not installed (pip install grad-cam)"
    return None


def _load(cfg: Config, path: Path, key: str, num_classes: int, channels: int, size: int):
    return load_classifier(cfg.eval, path, key, num_classes=num_classes, channels=channels, size=size)


def target_layer(model: torch.nn.Module, spec) -> torch.nn.Module | None:
    """The last convolution whose output is still at least 7 px wide (coarser maps say
    little about a 28 px digit); None for models without convolutions after the stem (ViTs)."""
    shapes: list[tuple[torch.nn.Module, int]] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: shapes.append((mod, o.shape[-1])))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(spec(torch.zeros(1, spec.channels, spec.size, spec.size, dtype=torch.uint8)))
    for h in hooks:
        h.remove()
    if len(shapes) < 3:
        return None
    wide = [m for m, w in shapes if w >= 7]
    return (wide or [shapes[-1][0]])[-1]


def _rgb(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C) -> float RGB (size, size, 3) in [0, 1]."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0]
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def panel(cfg: Config, metrics: dict, test, classes: list[str]) -> tuple[bytes | None, str]:
    """(PNG bytes or None, caption or the reason there is no panel)."""
    why = available()
    if why:
        return None, f"Grad-CAM panels skipped: {why}."
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from genaug.evaluate.run import model_path

    settings = [s for s in metrics["settings"] if s["mix"] > 0]
    if not settings:
        return None, "Grad-CAM panels skipped: no augmented setting was evaluated."
    chosen = (metrics.get("auto") or {}).get("chosen_mix")
    aug = next((s for s in settings if s["mix"] == chosen), None) or max(settings, key=lambda s: s["gain_acc"]["mean"])
    seed, out = metrics["seeds"][0], cfg.run_dir() / "eval"
    paths = [model_path(out, "strong", 0.0, seed), model_path(out, "synthetic", aug["mix"], seed)]
    if not all(p.is_file() for p in paths):
        return None, "Grad-CAM panels skipped: no saved classifier weights (rerun 'genaug pipeline --from eval')."
    channels, size = test.images.shape[-1], test.images.shape[1]
    keys = metrics.get("keys") or {}
    loaded = [_load(cfg, p, keys.get(arm), len(classes), channels, size) for p, arm in zip(paths, ("strong", "synthetic"))]
    if any(m is None for m in loaded):
        return None, "Grad-CAM panels skipped: the saved weights belong to another evaluation setting."
    layers = [target_layer(model, spec) for model, spec in loaded]
    if layers[0] is None:
        return None, f"Grad-CAM panels skipped: {cfg.eval.model} has no convolutional feature map to explain."
    x = torch.from_numpy(test.images).permute(0, 3, 1, 2)
    y = torch.from_numpy(test.labels)
    preds = [predict(m, spec, x, "cpu") for m, spec in loaded]
    fixed = torch.nonzero((preds[0] != y) & (preds[1] == y)).flatten().tolist()
    broken = torch.nonzero((preds[0] == y) & (preds[1] != y)).flatten().tolist()
    rows = fixed[: MAX_ROWS - min(2, len(broken))]
    rows += broken[: MAX_ROWS - len(rows)]
    if not rows:
        return None, "Grad-CAM panels skipped: the two classifiers agree on every test image."
    cams = []
    for (model, spec), layer in zip(loaded, layers):
        with GradCAM(model=model, target_layers=[layer]) as cam:
            cams.append(cam(input_tensor=spec(x[rows]), targets=[ClassifierOutputTarget(int(y[i])) for i in rows]))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genaug.evaluate.plots import png_bytes

    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.2 * len(rows)), squeeze=False)
    for k, i in enumerate(rows):
        base = _rgb(test.images[i], cams[0].shape[-1])
        axes[k][0].imshow(base)
        axes[k][0].set_title(f"test #{i}: true {classes[int(y[i])]}", fontsize=8)
        for j, name in ((1, "strong real-only"), (2, f"+ synthetic r = {aug['mix']:g}")):
            axes[k][j].imshow(show_cam_on_image(base.astype(np.float32), cams[j - 1][k], use_rgb=True))
            p = int(preds[j - 1][i])
            axes[k][j].set_title(f"{name}: predicts {classes[p]} {'ok' if p == int(y[i]) else 'WRONG'}", fontsize=8)
        for a in axes[k]:
            a.axis("off")
    fig.tight_layout()
    data = png_bytes(fig)
    caption = (f"Grad-CAM for the true class (seed {seed}; last conv layer at >= 7 px): test images that the augmented "
               f"classifier (r = {aug['mix']:g}) gets right and the strong real-only one gets wrong ({len(fixed)} in all), "
               f"then ones it breaks ({len(broken)} in all).")
    return data, caption

"""Per-image scores behind the filters (SPEC §4).

* ``confidence`` — the judge's probability for the conditioning label (``judge_pred``
  is its arg-max).
* ``feature_distance`` — distance, in the judge's penultimate feature space, to the
  k-th nearest real training image of the same class. A real image's own k-NN
  distance (to other reals of its class) gives the class's radius; ``realism`` is
  radius(q) / feature_distance, so >= 1 means "inside the region where a share q of
  the real class lies" (the k-NN realism idea of Kynkäänniemi et al., 2019).
* ``nn_distance`` — RMS pixel distance in [0, 1] to the nearest real training image of
  any class: a near-copy signals memorisation and adds nothing to training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genaug.data.base import Split
from genaug.classify.views import to_input
from genaug.judge import predict


@dataclass
class RealReference:
    """What the scores compare against: the real training split, per class."""

    class_feats: list[torch.Tensor]  # per class (n_c, D) judge features
    class_radii: list[np.ndarray | None]  # per class sorted k-NN distances of reals to other reals; None: < 2 images
    pixels: torch.Tensor  # (N, H*W*C) float in [0, 1], all training images
    k: int

    def radius(self, label: int, quantile: float) -> float | None:
        """The class's realism radius; None (realism off) for a class with one training image."""
        radii = self.class_radii[label]
        return None if radii is None else float(np.quantile(radii, quantile))

    def realism_off(self) -> list[int]:
        return [c for c, radii in enumerate(self.class_radii) if radii is None]


@torch.no_grad()
def judge_features(model: torch.nn.Module, images: torch.Tensor, channels: int, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features ``(N, D)`` of uint8 images ``(N, C, H, W)``."""
    model.eval()
    out = [model.forward_head(model.forward_features(to_input(images[i : i + batch_size], channels)), pre_logits=True)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def build_reference(judge: tuple[torch.nn.Module, dict], train: Split, num_classes: int, *, k: int = 5) -> RealReference:
    model, meta = judge
    images = torch.from_numpy(train.images).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    feats = judge_features(model, images, meta["in_chans"])
    labels = torch.from_numpy(train.labels)
    class_feats, radii = [], []
    for c in range(num_classes):
        fc = feats[labels == c]
        kk = min(k, len(fc) - 1)
        if kk < 1:  # one training image: no real-to-real distance, so no radius (realism off for the class)
            radii.append(None)
        else:
            d = torch.cdist(fc, fc)  # (n_c, n_c); column 0 after sorting is the image itself
            radii.append(np.sort(d.sort(dim=1).values[:, kk].numpy()))
        class_feats.append(fc)
    pixels = images.flatten(1).float().div(255.0)
    return RealReference(class_feats=class_feats, class_radii=radii, pixels=pixels, k=k)


@torch.no_grad()
def score_images(images: torch.Tensor, labels: torch.Tensor, judge: tuple[torch.nn.Module, dict],
                 ref: RealReference) -> list[dict]:
    """One score dict per uint8 image ``(N, C, H, W)`` conditioned on ``labels`` (N,);
    ``judge`` is ``load_judge(...)``'s (model, meta)."""
    model, meta = judge
    probs = predict(model, images, meta["in_chans"])  # (N, K)
    feats = judge_features(model, images, meta["in_chans"])  # (N, D)
    nn = nearest_pixel_distance(images, ref.pixels)
    rows = []
    for i, y in enumerate(labels.tolist()):
        reals = ref.class_feats[y]
        kk = min(ref.k, len(reals)) - 1
        dist = torch.cdist(feats[i : i + 1], reals)[0].sort().values[kk]
        rows.append({"confidence": round(float(probs[i, y]), 6), "judge_pred": int(probs[i].argmax()),
                     "feature_distance": round(float(dist), 6), "nn_distance": round(float(nn[i]), 6)})
    return rows


def nearest_pixel_distance(images: torch.Tensor, reals: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """RMS distance in [0, 1] pixel units from each image to its nearest real image."""
    x = images.flatten(1).float().div(255.0)
    if x.shape[1] != reals.shape[1]:
        raise ValueError(f"generated images have {x.shape[1]} values, real ones {reals.shape[1]}")
    out = [torch.cdist(x[i : i + chunk], reals).min(dim=1).values for i in range(0, len(x), chunk)]
    return torch.cat(out) / x.shape[1] ** 0.5

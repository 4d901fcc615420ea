"""FID / KID / precision-recall through torch-fidelity (SPEC §4).

Two feature extractors:

* ``inception`` — torch-fidelity's ``inception-v3-compat`` (comparable with papers);
  offline it needs weights imported with ``genaug weights import inception``.
* ``judge`` — the penultimate layer of the run's judge classifier (trained on the real
  training split only), registered with torch-fidelity as ``genaug-judge``. For 28 px
  digits this space is more meaningful than ImageNet Inception features, and cheap on
  a CPU, so training-time model selection uses it by default.

Every result records the extractor, the image counts and the reference split.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from genaug.errors import GenaugError

JUDGE_EXTRACTOR = "genaug-judge"


class JudgeFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor over the judge; ``feature_extractor_weights_path`` is
    the judge directory. Input: uint8 ``(B, 3, H, W)``; output: pooled features ``(B, D)``."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        from genaug.judge import load_judge

        if feature_extractor_weights_path is None:
            raise GenaugError("the judge feature extractor needs the judge directory")
        self.model, meta = load_judge(feature_extractor_weights_path)
        self.channels = meta["in_chans"]
        self.requires_grad_(False)

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "penultimate"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 28, 28, dtype=torch.uint8)

    def forward(self, x):
        from genaug.classify.views import to_input

        feats = self.model.forward_head(self.model.forward_features(to_input(x, self.channels)), pre_logits=True)
        logits = self.model.get_classifier()(feats)
        out = {"penultimate": feats.double(), "logits": logits.double()}
        return tuple(out[name] for name in self.features_list)


if JUDGE_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(JUDGE_EXTRACTOR, JudgeFeatureExtractor)


class ImagesDataset(Dataset):
    """uint8 ``(N, C, H, W)`` images as torch-fidelity wants them: 3-channel uint8."""

    def __init__(self, images: torch.Tensor):
        assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
        self.images = images if images.shape[1] == 3 else images.expand(-1, 3, -1, -1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def inception_weights_path() -> Path | None:
    """The converted Inception weights (``genaug weights import inception``), if present."""
    from genaug.weights import INCEPTION_FILE, weights_dir

    path = weights_dir() / INCEPTION_FILE
    return path if path.is_file() else None


def fidelity(
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    extractor: str = "judge",
    judge_dir: str | Path | None = None,
    reference: str = "train",
    prc: bool = False,
    real_cache_name: str | None = None,
    cache_root: str | Path | None = None,
) -> dict:
    """FID and KID (and optionally precision/recall) of ``fake`` against ``real``.

    Both are uint8 ``(N, C, H, W)``. ``real_cache_name`` lets torch-fidelity cache the
    real features (include a hash of whatever they depend on in the name).
    """
    if len(fake) < 2 or len(real) < 2:
        raise GenaugError(f"FID needs at least 2 images on each side (got {len(fake)} and {len(real)})")
    kwargs: dict = {}
    if extractor == "judge":
        kwargs.update(feature_extractor=JUDGE_EXTRACTOR, feature_extractor_weights_path=str(judge_dir))
    elif extractor == "inception":
        kwargs.update(feature_extractor="inception-v3-compat")
        weights = inception_weights_path()
        if weights is not None:
            kwargs["feature_extractor_weights_path"] = str(weights)
    else:
        raise GenaugError(f"unknown feature extractor '{extractor}' (judge or inception)")
    if real_cache_name and cache_root:
        kwargs.update(input2_cache_name=real_cache_name, cache_root=str(cache_root), cache=True)
    else:
        kwargs["cache"] = False
    try:
        metrics = torch_fidelity.calculate_metrics(
            input1=ImagesDataset(fake), input2=ImagesDataset(real), fid=True, kid=True, prc=prc,
            kid_subset_size=min(1000, len(fake), len(real)), cuda=torch.cuda.is_available(),
            batch_size=200, save_cpu_ram=True, verbose=False, **kwargs,
        )
    except Exception as exc:
        if extractor == "inception" and inception_weights_path() is None:
            raise GenaugError("Inception weights unavailable (offline?): run 'genaug weights import inception'") from exc
        raise
    out = {
        "fid": float(metrics["frechet_inception_distance"]),
        "kid_mean": float(metrics["kernel_inception_distance_mean"]),
        "kid_std": float(metrics["kernel_inception_distance_std"]),
        "extractor": extractor if extractor == "judge" else "inception-v3-compat",
        "n_fake": len(fake), "n_real": len(real), "reference": reference,
    }
    if prc:
        out.update(precision=float(metrics["precision"]), recall=float(metrics["recall"]))
    return out


def load_image_set(spec: str, *, max_images: int | None, seed: int = 0, data_root: str | None = None) -> tuple[torch.Tensor, str]:
    """``NAME[:SPLIT]`` (a built-in source, default split train), ``noise[:N]`` (uniform
    noise, 28x28 grayscale), or an ImageFolder path (every image) -> uint8 (N, C, H, W)."""
    import numpy as np

    from genaug.config import DataConfig
    from genaug.data import SOURCES, load_data

    name, _, split = spec.partition(":")
    if name == "noise":
        n = int(split or max_images or 1000)
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g), f"noise ({n} images)"
    if name in SOURCES or (":" in spec and not Path(spec).exists()):
        data = load_data(DataConfig(source=name, root=data_root))
        split = split or "train"
        if split not in data.splits:
            raise GenaugError(f"unknown split '{split}' in {spec!r} (train, val or test)")
        images = data.splits[split].images
    else:
        data = load_data(DataConfig(source=spec, val_fraction=0.0, test_fraction=0.0))
        images, split = data.splits["train"].images, "all"
    if max_images is not None and len(images) > max_images:
        keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:max_images])
        images = images[keep]
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), f"{name}:{split} ({len(images)} images)"

"""Small from-scratch timm models for 16-64 px inputs (SPEC §5).

ImageNet ResNets shrink a 28x28 digit to 1x1 after the stem; these variants keep a
stride-1 3-conv stem and no max-pool, so the four stages see 28 -> 28, 14, 7, 4 px
(``resnet_fast28``: a stride-2 stem, so 14, 7, 4, 2 px).
They are registered in timm's registry, so ``timm.create_model("resnet_small28")``
works like any other model (and so does ``eval.model: resnet_small28``).
"""

from __future__ import annotations

import torch.nn as nn
from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet


def _small_resnet(channels: tuple[int, ...], layers: tuple[int, ...], *, in_chans: int = 3, num_classes: int = 1000,
                  img_size: int = 28, stem_stride: int = 1, **kwargs) -> ResNet:
    kwargs.pop("pretrained", None)
    kwargs.pop("pretrained_cfg", None)
    for key in ("pretrained_cfg_overlay", "cache_dir", "features_only"):
        kwargs.pop(key, None)
    model = ResNet(BasicBlock, layers, in_chans=in_chans, num_classes=num_classes, stem_type="deep",
                   stem_width=channels[0] // 2, channels=channels, **kwargs)
    model.conv1[0].stride = (stem_stride, stem_stride)  # 1: (B, C, H, W) keeps full resolution through the stem
    model.maxpool = nn.Identity()
    model.pretrained_cfg = {
        "input_size": (in_chans, img_size, img_size), "interpolation": "bilinear", "crop_pct": 1.0,
        "crop_mode": "center", "mean": (0.5,) * in_chans, "std": (0.5,) * in_chans, "num_classes": num_classes,
        "first_conv": "conv1", "classifier": "fc",
    }
    return model


@register_model
def resnet_small28(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet with one BasicBlock per stage, widths 16-128 (~0.3M params): the judge."""
    return _small_resnet((16, 32, 64, 128), (1, 1, 1, 1), **kwargs)


@register_model
def resnet_fast28(pretrained: bool = False, **kwargs) -> ResNet:
    """resnet_small28 with a stride-2 stem (stages see 14, 7, 4, 2 px): the same
    parameters, about 2.3x the training steps per second on a 2-core CPU; the
    Fashion-MNIST benchmark's classifier (configs/bench_fmnist.yaml)."""
    return _small_resnet((16, 32, 64, 128), (1, 1, 1, 1), stem_stride=2, **kwargs)


@register_model
def resnet_medium32(pretrained: bool = False, **kwargs) -> ResNet:
    """ResNet-10-like, widths 32-256 (~1.2M params), for 28-64 px classifiers."""
    return _small_resnet((32, 64, 128, 256), (1, 1, 1, 1), img_size=32, **kwargs)

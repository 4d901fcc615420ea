import torch

from genaug.fidelity import inception_weights_path
from genaug.weights import convert_inception, empty_fidelity_inception, fid_helper_model_path


def test_imported_inception_matches_fid_helper_torchscript():
    """Features of the converted torch-fidelity InceptionV3 equal the TorchScript's."""
    model = empty_fidelity_inception()
    model.load_state_dict(convert_inception(fid_helper_model_path()))
    reference = torch.jit.load(str(fid_helper_model_path()), map_location="cpu").eval()
    x = torch.randint(0, 256, (3, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x)[0].float()  # torch-fidelity maps uint8 to (x - 128) / 128 itself
        theirs = reference((x.float() - 128) / 128).float()
    assert ours.shape == theirs.shape == (3, 2048)
    assert (ours - theirs).abs().max() < 1e-4
    assert ours.abs().mean() > 0.05  # real features, not zeros


def test_weights_import_and_list_cli(run_cli):
    listed = run_cli("weights", "list")
    assert listed.exit_code == 0 and "inception" in listed.output and "missing" in listed.output
    assert inception_weights_path() is None
    result = run_cli("weights", "import", "inception")
    assert result.exit_code == 0, result.output
    path = inception_weights_path()
    assert path is not None and path.stat().st_size > 50_000_000
    assert "present" in run_cli("weights", "list").output
    state = torch.load(path, weights_only=True)
    assert state["Conv2d_1a_3x3.bn.weight"].eq(1).all()


def test_fid_cli_real_digits_are_closer_than_noise(run_cli):
    assert run_cli("weights", "import", "inception").exit_code == 0
    near = run_cli("fid", "mnist5k:train", "mnist5k:test", "--max-images", "40")
    far = run_cli("fid", "mnist5k:test", "noise:40", "--max-images", "40")
    assert near.exit_code == 0 and far.exit_code == 0, near.output + far.output
    assert "extractor: inception-v3-compat" in near.output and "(40 images)" in near.output

    def fid(out: str) -> float:
        return float(out.split("FID ")[1].split()[0])

    assert fid(near.output) * 2 < fid(far.output)


def test_imported_efficientnet_lite0_classifies_photos(run_cli):
    """After the import, timm's efficientnet_lite0 with the imported weights and their
    0.5/0.5 normalisation names a cat photo a cat and an espresso photo an espresso."""
    import pytest

    data = pytest.importorskip("skimage.data")
    import timm
    from PIL import Image

    from genaug.weights import pretrained_overlay

    assert pretrained_overlay("efficientnet_lite0") is None
    result = run_cli("weights", "import", "efficientnet-lite0")
    assert result.exit_code == 0, result.output
    overlay = pretrained_overlay("efficientnet_lite0")
    assert overlay["mean"] == (0.5, 0.5, 0.5)
    model = timm.create_model("efficientnet_lite0", pretrained=True, pretrained_cfg_overlay=overlay).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    cats = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    with torch.no_grad():
        cat = model(transform(Image.fromarray(data.chelsea())).unsqueeze(0)).argmax().item()
        coffee = model(transform(Image.fromarray(data.coffee())).unsqueeze(0)).argmax().item()
    assert cat in cats and coffee == 967  # 967 = espresso
    assert "efficientnet-lite0 present" in " ".join(run_cli("weights", "list").output.split())

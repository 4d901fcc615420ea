from pathlib import Path

import pytest

from genaug.config import Config, load_config, parse_override
from genaug.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_default_config_is_embedded_mnist5k():
    cfg = load_config()
    assert cfg.run == "default" and cfg.data.source == "mnist5k"
    assert cfg == Config()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    cfg = load_config(path)
    assert cfg.run


def test_mnist5k_gan_yaml_is_the_builtin_default():
    assert load_config(Path(__file__).parents[1] / "configs" / "mnist5k_gan.yaml") == Config()


def test_shipped_configs_include_required_ones():
    names = {p.name for p in CONFIGS}
    assert {"smoke.yaml", "mnist5k_gan.yaml", "fashion_mnist_gan.yaml"} <= names


def test_overrides_apply_with_yaml_types():
    cfg = load_config(None, ["gan.steps=12", "data.real_per_class=5", "gan.loss=nonsat", "data.skip_bad_images=true"])
    assert cfg.gan.steps == 12 and cfg.data.real_per_class == 5
    assert cfg.gan.loss == "nonsat" and cfg.data.skip_bad_images is True


def test_overrides_without_a_file_keep_the_builtin_default_run():
    cfg = load_config(None, ["eval.seeds=5"])
    assert cfg.eval.seeds == 5 and cfg.eval.model == Config().eval.model and cfg.data.imbalance == 0.05
    other = load_config(None, ["data.source=fashion-mnist"])  # another source drops the default's long tail
    assert other.data.imbalance is None and other.data.source == "fashion-mnist"


def test_override_beats_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("gan:\n  steps: 7\n")
    assert load_config(p).gan.steps == 7
    assert load_config(p, ["gan.steps=9"]).gan.steps == 9


@pytest.mark.parametrize(
    "override, named",
    [
        ("nosuch.key=1", "nosuch.key"),
        ("gan.nosuch=1", "gan.nosuch"),
        ("gan.steps=0", "gan.steps"),
        ("gan.lr_g=abc", "gan.lr_g"),
        ("data.val_fraction=1.5", "data.val_fraction"),
        ("gan.loss=wasserstein", "gan.loss"),
        ("run=../evil", "run"),
    ],
)
def test_bad_override_names_the_key(override, named):
    with pytest.raises(ConfigError, match=rf"'{named}'"):
        load_config(None, [override])


def test_unknown_key_in_yaml_file_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  source: mnist5k\n  sorce: typo\n")
    with pytest.raises(ConfigError, match="'data.sorce'"):
        load_config(p)


def test_non_mapping_yaml_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_parse_override_requires_equals():
    assert parse_override("a.b=1.5") == (["a", "b"], 1.5)
    with pytest.raises(ConfigError):
        parse_override("a.b")


def test_dry_run_prints_resolved_config(run_cli):
    result = run_cli("train-gan", "--dry-run", "--set", "gan.steps=17", "--run", "x1")
    assert result.exit_code == 0, result.output
    assert "steps: 17" in result.output and "run: x1" in result.output
    roundtrip = Config.model_validate(__import__("yaml").safe_load(result.output))
    assert roundtrip.gan.steps == 17

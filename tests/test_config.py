from __future__ import annotations

from pathlib import Path

import pytest

from catdog.config import load_config
from catdog.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_article_config_matches_the_article():
    c = load_config(ROOT / "configs" / "article.yaml")
    assert c.data.image_size == (300, 300)
    assert ((c.model.name, c.model.filters, c.model.kernel_size, c.model.strides, c.model.padding)
            == ("article", 10, 5, 1, "valid"))
    assert (c.model.pool, c.model.pool_size, c.model.head) == ("max", 2, "softmax")
    assert (c.train.epochs, c.train.batch_size, c.train.optimizer) == (5, 128, "adam")
    assert c.data.validation_split == 0.3


def test_built_in_configs_load_by_name_from_the_package():
    for name in ("article", "small", "large", "transfer"):
        assert load_config(name) == load_config(ROOT / "configs" / f"{name}.yaml")
    assert load_config("small.yaml") == load_config("small")


def test_a_file_wins_over_a_built_in_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small").write_text("train: {epochs: 3}\n")
    assert load_config("small").train.epochs == 3


def test_overrides_are_yaml_scalars():
    c = load_config(None, ["train.epochs=1", "data.image_size=64", "data.image_size=[32, 48]",
                           "train.learning_rate=1e-4"])
    assert c.train.epochs == 1 and c.data.image_size == (32, 48) and c.train.learning_rate == 1e-4


@pytest.mark.parametrize("override, message", [
    ("train.epochz=1", "unknown config key train.epochz (--set); did you mean train.epochs?"),
    ("train.epochs=-3", "train.epochs must be an integer >= 1; got -3 (--set)"),
    ("train.epochs=two", "train.epochs must be an integer >= 1; got 'two' (--set)"),
    ("data.image_size=abc",
     "data.image_size must be an int or [height, width] of integers in [8, 2048]; got 'abc' (--set)"),
    ("model.padding=full", "model.padding must be one of 'valid', 'same'; got 'full' (--set)"),
    ("data.validation_split=1.5", "data.validation_split must be a number in [0.0, 0.9]; got 1.5 (--set)"),
    ("train.cutmix=2", "train.cutmix must be a number in [0.0, 1.0]; got 2.0 (--set)"),
    ("model.blocks=[{filterz: 3}]",
     "unknown config key model.blocks[0].filterz (--set); did you mean model.blocks[0].filters?"),
    ("train=3", "train must be a mapping; got 3 (--set)"),
])
def test_bad_values_name_key_value_and_source(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert str(exc.value) == message


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML at line"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("modle:\n  name: article\n")
    with pytest.raises(ConfigError, match=r"unknown config key modle \(.*typo.yaml\); did you mean model\?"):
        load_config(typo)
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        load_config(None, ["train.epochs"])


def test_defaults_are_the_article_config():
    # `catdog train` without -c must train the article's model, wherever it is run from.
    assert load_config(None) == load_config(ROOT / "configs" / "article.yaml")

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from catdog.cli import main
from catdog.config import MODEL_READS, ModelConfig, UnreadKeyWarning, config_yaml, load_config
from catdog.errors import ConfigError
from catdog.runs import run_name

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


# --- each model's own keys --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["article", "small", "large", "transfer"])
def test_resolve_shows_only_the_keys_the_model_reads_and_loads_back_the_same(name, tmp_path):
    config = load_config(name)
    text = config_yaml(config)
    model = yaml.safe_load(text)["model"]
    reads = MODEL_READS[config.model.name]
    assert list(model) == ["name", *(f.name for f in dataclasses.fields(ModelConfig) if f.name in reads.keys)]
    assert all(list(block) == list(reads.block_keys) for block in model.get("blocks", []))
    # What a run's config.yaml holds: training it again warns of nothing and gives the same config.
    (tmp_path / "config.yaml").write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_config(tmp_path / "config.yaml")
    assert again == config and again.name == name


def test_the_large_resnet_shows_none_of_the_articles_keys():
    model = yaml.safe_load(config_yaml(load_config("large")))["model"]
    assert not {"filters", "kernel_size", "top", "padding", "backbone"} & set(model)
    assert all("batch_norm" not in b and "padding" not in b for b in model["blocks"])


RESNET_READS = ("activation, head, stem_pool, blocks, dense_units, dropout, flip, rotation, zoom, translation, "
                "contrast; in each of model.blocks: filters, kernel_size, strides, convs, pool, pool_size, dropout")


def test_setting_a_key_the_model_does_not_read_warns_naming_model_and_key(tmp_path):
    with pytest.warns(UnreadKeyWarning) as caught:
        config = load_config("small", ["model.top=flatten"])
    assert [str(w.message) for w in caught] == [
        f"model.top is not read by the resnet model (it reads: {RESNET_READS}); ignored (--set)"]
    assert config.model.top == "flatten" and "top" not in yaml.safe_load(config_yaml(config))["model"]
    mine = tmp_path / "mine.yaml"
    mine.write_text("model:\n  name: resnet\n  filters: 64\n  blocks: [{filters: 8, batch_norm: true}]\n")
    with pytest.warns(UnreadKeyWarning) as caught:
        load_config(mine, ["model.kernel_size=3"])
    assert [str(w.message) for w in caught] == [
        f"model.filters, model.blocks[0].batch_norm are not read by the resnet model (it reads: {RESNET_READS}); "
        f"ignored ({mine})",
        f"model.kernel_size is not read by the resnet model (it reads: {RESNET_READS}); ignored (--set)"]


def test_switching_the_model_warns_of_the_files_keys_the_new_one_ignores():
    with pytest.warns(UnreadKeyWarning, match=r"^model.filters, model.kernel_size, model.strides, model.padding, "
                                              r"model.pool, model.pool_size are not read by the cnn model "
                                              r"\(it reads: .*\); ignored \(built-in config article\)$"):
        load_config("article", ["model.name=cnn"])


def test_cli_prints_the_unread_key_warning_as_one_line():
    result = CliRunner().invoke(main, ["config", "resolve", "-c", "small", "--set", "model.filters=77"])
    assert result.exit_code == 0
    assert result.stderr == (f"warning: model.filters is not read by the resnet model (it reads: {RESNET_READS}); "
                             f"ignored (--set)\n")
    assert "77" not in result.stdout


# --- the config's name, for the run folder ---------------------------------------------------

def test_a_config_is_named_after_the_built_in_or_the_file(tmp_path):
    assert load_config("small").name == "small" and load_config(None).name is None
    (tmp_path / "my exp.yaml").write_text("model: {name: resnet}\n")
    assert load_config(tmp_path / "my exp.yaml").name == "my exp"
    assert load_config("small", ["name=wide"]).name == "wide"
    # A run's config.yaml: the name it records, else (an older run) its folder's without the time.
    run = tmp_path / "runs" / "20250101-120000-resnet"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config_yaml(load_config("small")))
    assert load_config(run / "config.yaml").name == "small"
    (run / "config.yaml").write_text("model: {name: resnet}\n")
    assert load_config(run / "config.yaml").name == "resnet"


def test_run_folders_are_named_after_the_config_in_a_safe_form(tmp_path):
    assert run_name(load_config("small")) == "small" and run_name(load_config("large")) == "large"
    assert run_name(load_config(None, ["model.name=cnn"])) == "cnn"
    assert run_name(load_config(None, ["name=../my exp/1"])) == "my-exp-1"
    assert run_name(load_config(None, ["name=..", "model.name=resnet"])) == "resnet"


# --- -c that names no config ---------------------------------------------------------------

def test_c_naming_a_folder_or_a_near_miss_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = "article, large, small, transfer"
    cases = {
        "smal": "no config file or built-in config named smal; did you mean small?",
        "larg.yaml": "no config file or built-in config named larg.yaml; did you mean large?",
        "nope": f"config file not found: nope (expected a YAML file or a built-in config name: {names})",
        "folder": f"config folder is a folder, not a YAML file; expected a YAML file or a built-in config name: "
                  f"{names}",
        "run": "config run is a folder, not a YAML file; did you mean run/config.yaml?",
        "mine/exp1.yml": "config file not found: mine/exp1.yml; did you mean mine/exp1.yaml?",
    }
    (tmp_path / "folder").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("seed: 1\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "exp1.yaml").write_text("seed: 1\n")
    for given, message in cases.items():
        result = CliRunner().invoke(main, ["config", "resolve", "-c", given])
        assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), given


@pytest.mark.parametrize("override, message", [
    ("model.filterz=3", "unknown config key model.filterz (--set); did you mean model.filters?"),
    ("filters=3", "unknown config key filters (--set); did you mean model.filters?"),
    ("data.epochs=3", "unknown config key data.epochs (--set); did you mean train.epochs?"),
])
def test_an_unknown_key_suggests_the_closest(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert str(exc.value) == message

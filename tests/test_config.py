from __future__ import annotations

import dataclasses
import os
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
    # Exclusive and inclusive bounds, and the MAX_COUNT ceiling named only to a value above it.
    ("train.learning_rate=0", "train.learning_rate must be a number in (0.0, 10.0]; got 0.0 (--set)"),
    ("train.learning_rate=11", "train.learning_rate must be a number in (0.0, 10.0]; got 11.0 (--set)"),
    ("train.epochs=2000000", "train.epochs must be an integer in [1, 1000000]; got 2000000 (--set)"),
    ("train.epochs=0", "train.epochs must be an integer >= 1; got 0 (--set)"),
    ("train.epochs=true", "train.epochs must be an integer >= 1; got True (--set)"),
    ("train.epochs=1.5", "train.epochs must be an integer >= 1; got 1.5 (--set)"),
    ("seed=4294967296", "seed must be an integer in [0, 4294967295]; got 4294967296 (--set)"),
    ("data.workers=1025", "data.workers must be an integer in [0, 1024]; got 1025 (--set)"),
    ("model.dropout=0.96", "model.dropout must be a number in [0.0, 0.95]; got 0.96 (--set)"),
    # Numbers that are not finite, or not numbers.
    ("train.learning_rate=nan", "train.learning_rate must be a finite number in (0.0, 10.0]; got nan (--set)"),
    ("train.learning_rate=.inf", "train.learning_rate must be a finite number in (0.0, 10.0]; got inf (--set)"),
    ("train.learning_rate=abc", "train.learning_rate must be a number in (0.0, 10.0]; got 'abc' (--set)"),
    ("train.learning_rate=true", "train.learning_rate must be a number in (0.0, 10.0]; got True (--set)"),
    # Unions: a choice or a mapping, an integer or null, a string or null.
    ("train.class_weight=often",
     "train.class_weight must be 'balanced' or a mapping {name: number} or null; got 'often' (--set)"),
    ("train.class_weight=[1]",
     "train.class_weight must be 'balanced' or a mapping {name: number} or null; got [1] (--set)"),
    ("train.class_weight={cats: 0}", "train.class_weight.cats must be a number > 0.0; got 0.0 (--set)"),
    ("train.class_weight={cats: x}", "train.class_weight.cats must be a number > 0.0; got 'x' (--set)"),
    ("train.micro_batch=0", "train.micro_batch must be an integer or null >= 1; got 0 (--set)"),
    ("model.backbone=3", "model.backbone must be a string or null; got 3 (--set)"),
    ("model.flip=1", "model.flip must be true or false; got 1 (--set)"),
    ("model.name=3", "model.name must be a string; got 3 (--set)"),
    ("train.jit_compile=maybe", "train.jit_compile must be one of 'auto', 'on', 'off'; got 'maybe' (--set)"),
    ("train.jit_compile=3", "train.jit_compile must be one of 'auto', 'on', 'off'; got 3 (--set)"),
    # Image sizes: two integers (not booleans) in [8, 2048].
    ("data.image_size=[8]",
     "data.image_size must be an int or [height, width] of integers in [8, 2048]; got [8] (--set)"),
    ("data.image_size=[7, 8]",
     "data.image_size must be an int or [height, width] of integers in [8, 2048]; got [7, 8] (--set)"),
    ("data.image_size=[true, 8]",
     "data.image_size must be an int or [height, width] of integers in [8, 2048]; got [True, 8] (--set)"),
    ("data.image_size=2049",
     "data.image_size must be an int or [height, width] of integers in [8, 2048]; got [2049, 2049] (--set)"),
    # Lists, their items and their length.
    ("model.blocks=3", "model.blocks must be a list; got 3 (--set)"),
    ("model.blocks=[3]", "model.blocks[0] must be a mapping; got 3 (--set)"),
    ("model.blocks=[{filters: 0}]", "model.blocks[0].filters must be an integer >= 1; got 0 (--set)"),
    ("model.blocks=[" + ", ".join(["{}"] * 65) + "]",
     "model.blocks must be a list of at most 64 items; got [{}, {}, {}, {}, {}, {}, ...] (--set)"),
    # Keys: one in another section is suggested; otherwise the section's keys are listed.
    ("epochs=1", "unknown config key epochs (--set); did you mean train.epochs?"),
    ("data.xxxxxxxxxxxxxxxxxxxx=1",
     "unknown config key data.xxxxxxxxxxxxxxxxxxxx (--set); known keys: data.dir, data.validation_dir, "
     "data.image_size, data.resize, data.validation_split, data.test_split, data.cache_dir, data.workers, "
     "data.decisions"),
    ("=3", "--set expects KEY=VALUE, e.g. train.epochs=1; got '=3'"),
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
    # An image_sizes entry (large's) writes the keys it sets, not the other key of each pair as null.
    sizes = yaml.safe_load(text)["train"]["image_sizes"]
    assert all(None not in entry.values() and len(entry) == 2 for entry in sizes)


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


def test_override_into_a_value_that_is_not_a_section(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 2}\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["train.epochs.x=1"])
    assert str(exc.value) == "--set train.epochs.x: epochs is not a section"
    assert load_config(path, ["train.batch_size=4"]).train.epochs == 2  # the file's values stay
    assert load_config(path, ["data.dir= "]).data.dir is None  # an empty value is null


def test_values_are_taken_as_everyone_means_them():
    c = load_config(None, ["train.jit_compile=on", "train.learning_rate=1e-4", "data.image_size=9",
                           "train.class_weight={cats: 2}", "train.micro_batch=null", "model.backbone=null"])
    assert (c.train.jit_compile, c.train.learning_rate, c.data.image_size) == ("on", 1e-4, (9, 9))
    assert c.train.class_weight == {"cats": 2.0} and type(c.train.class_weight["cats"]) is float
    assert c.train.micro_batch is None and c.model.backbone is None
    assert load_config(None, ["train.jit_compile=off"]).train.jit_compile == "off"
    assert load_config(None, ["train.class_weight=balanced"]).train.class_weight == "balanced"
    assert type(load_config(None, ["train.learning_rate=1"]).train.learning_rate) is float
    # Each config gets its own list of blocks.
    from catdog.config import ModelConfig
    assert ModelConfig().blocks == [] and ModelConfig().blocks is not ModelConfig().blocks


@pytest.mark.parametrize("name, text, message", [
    ("dup.yaml", b"train:\n  epochs: 1\n  epochs: 2\n", "dup.yaml: not valid YAML at line 3 (duplicate key epochs)"),
    ("dupsection.yaml", b"train: {epochs: 1}\ntrain: {epochs: 2}\n",
     "dupsection.yaml: not valid YAML at line 2 (duplicate key train)"),
    ("unhashable.yaml", b"? [1, 2]\n: 3\n", "unhashable.yaml: not valid YAML at line 1 (found unhashable key)"),
    ("tab.yaml", b"train:\n\tepochs: 1\n",
     "tab.yaml: not valid YAML at line 2 (found character '\\t' that cannot start any token)"),
    ("latin.yaml", b"# caf\xe9\ntrain: {}\n", "latin.yaml: not UTF-8 text (byte 0xe9 at offset 5); save it as UTF-8"),
    ("list.yaml", b"- 1\n- 2\n", "list.yaml: expected a mapping of sections (data, model, train); got list"),
    ("bomb.yaml", b"a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
     "bomb.yaml: expands to more than 10,000 values (YAML aliases nested in aliases?); a config needs a few hundred"),
    ("section.yaml", b"train: 3\n", "train must be a mapping; got 3 (SECTION)"),
])
def test_bad_files_name_the_file_and_the_line(tmp_path, name, text, message):
    (tmp_path / name).write_bytes(text)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / name)
    assert str(exc.value) == (message.replace("SECTION", str(tmp_path / name)) if "SECTION" in message
                              else f"{tmp_path / name}: " + message.split(": ", 1)[1])


def test_an_override_that_expands_too_far_is_refused():
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["model.blocks=[" + ", ".join(["{}"] * 10_001) + "]"])
    assert str(exc.value) == "--set: expands to more than 10,000 values (YAML aliases nested in aliases?); " \
                             "a config needs a few hundred"


def test_yaml_merge_keys_and_empty_files_are_fine(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("train:\n  <<: {epochs: 2, batch_size: 8}\n  epochs: 3\n")
    c = load_config(merged)
    assert (c.train.epochs, c.train.batch_size) == (3, 8)
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == load_config(None)


def test_built_in_configs_are_listed_and_described():
    from catdog.config import builtin_configs, config_yaml, describe
    configs = builtin_configs()
    assert list(configs) == sorted(configs) and {"article", "small", "large", "transfer"} <= set(configs)
    assert describe("# A config. It trains.\n# More: here\nx: 1\n") == "A config"
    assert describe("# Line one\n# and two: more\n") == "Line one and two"
    assert config_yaml(load_config(None)).startswith("seed: 42\ndata:\n  dir: null\n  validation_dir: null\n"
                                                     "  image_size: [300, 300]\n")
    with pytest.raises(ConfigError) as exc:
        load_config("nope")
    assert str(exc.value) == ("config file not found: nope (expected a YAML file or a built-in config name: "
                              + ", ".join(configs) + ")")


@pytest.mark.parametrize("override, message", [
    # A long value or key is cut, so that the line stays one line.
    ("train.epochs=[" + ", ".join(["a" * 70] * 6) + "]",
     "train.epochs must be an integer >= 1; got ['aaaaaaaaaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaaaaaaaaaaaaaaaaaaa', "
     "'aaaaaaaaaaaaaaaaaaaaaaaaaaa...aaaaaaaaaaaaaaaaaaaaaaaaaa... (--set)"),
    ("data." + "x" * 90 + "=1",
     "unknown config key data." + "x" * 75 + "... (--set); known keys: data.dir, data.validation_dir, "
     "data.image_size, data.resize, data.validation_split, data.test_split, data.cache_dir, data.workers, "
     "data.decisions"),
    ("workers=1", "unknown config key workers (--set); did you mean data.workers?"),
    # Not an integer: the ceiling is news only to a value above it.
    ("train.epochs=1000000.0", "train.epochs must be an integer >= 1; got 1000000.0 (--set)"),
    # 5 + 9,995 values is the most an override may expand to; one more is refused.
    ("model.blocks=[" + ", ".join(["{}"] * 9995) + "]",
     "model.blocks must be a list of at most 64 items; got [{}, {}, {}, {}, {}, {}, ...] (--set)"),
    ("model.blocks=[" + ", ".join(["{}"] * 9996) + "]",
     "--set: expands to more than 10,000 values (YAML aliases nested in aliases?); a config needs a few hundred"),
])
def test_long_values_and_limits_in_error_lines(override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert str(exc.value) == message


def test_every_upper_bound_is_inclusive_and_values_may_hold_equals_signs():
    c = load_config(None, ["model.activation=a=b", "model.name=[x", "model.blocks=[" + ", ".join(["{}"] * 64) + "]",
                           "data.image_size=2048", "data.validation_split=0.9", "train.epochs=1000000"])
    assert (c.model.activation, c.model.name, len(c.model.blocks)) == ("a=b", "[x", 64)
    assert (c.data.image_size, c.data.validation_split, c.train.epochs) == ((2048, 2048), 0.9, 1_000_000)
    from catdog.config import config_from_dict
    with pytest.raises(ConfigError) as exc:
        config_from_dict([1])  # type: ignore[arg-type]
    assert str(exc.value) == "config must be a mapping; got [1] (config)"


def test_yaml_files_refused_without_a_traceback(tmp_path):
    import re
    (tmp_path / "nul.yaml").write_bytes(b"train: {}\n\x00\n")  # a reader error: no line, no problem
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nul.yaml")
    assert re.fullmatch(re.escape(f"{tmp_path / 'nul.yaml'}: not valid YAML") + r"( \S.*)?", str(exc.value))
    assert "None" not in str(exc.value)
    (tmp_path / "long.yaml").write_bytes(b"model:\n  " + b"k" * 61 + b": 1\n  " + b"k" * 61 + b": 2\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "long.yaml")
    assert str(exc.value) == f"{tmp_path / 'long.yaml'}: not valid YAML at line 3 (duplicate key {'k' * 60}...)"
    # A merge key first does not hide a key given twice after it.
    (tmp_path / "merge.yaml").write_text("train:\n  <<: {epochs: 2}\n  epochs: 3\n  epochs: 4\n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "merge.yaml")
    assert str(exc.value) == f"{tmp_path / 'merge.yaml'}: not valid YAML at line 4 (duplicate key epochs)"


def test_a_description_is_the_comment_without_its_marks():
    from catdog.config import describe
    assert describe("# XL model\n") == "XL model" and describe("# Small.\n") == "Small"


def test_a_description_keeps_the_words_next_to_its_marks():
    from catdog.config import describe
    assert describe("#XL model\n") == "XL model" and describe("# Model X.\n") == "Model X"


def test_a_top_level_key_put_in_a_section_is_pointed_back_to_the_top():
    with pytest.raises(ConfigError) as exc:
        load_config(None, ["data.seed=1"])
    assert str(exc.value) == "unknown config key data.seed (--set); did you mean seed?"


def test_config_yaml_writes_each_block_on_one_line():
    lines = config_yaml(load_config("large")).splitlines()
    blocks = [line for line in lines[:lines.index("train:")] if line.startswith("  - ")]
    assert blocks[0] == "  - {filters: 32, kernel_size: 3, strides: 1, convs: 1, pool: max, pool_size: 2, dropout: 0.0}"
    assert len(blocks) == 4 and lines[lines.index("  blocks:") + 5] == "  dense_units: 0"


def test_the_unread_key_warning_points_at_the_caller_and_cuts_a_long_list(tmp_path):
    mine = tmp_path / "mine.yaml"
    # The keys come to 301 characters: cut at 300.
    mine.write_text("model:\n  name: resnet\n  top: flatten\n  pool: max\n  blocks: [" +
                    ", ".join(["{batch_norm: true}"] * 10) + "]\n")
    keys = ", ".join(["model.top", "model.pool"] + [f"model.blocks[{i}].batch_norm" for i in range(10)])
    assert len(keys) == 301
    with pytest.warns(UnreadKeyWarning) as caught:
        load_config(mine)
    assert str(caught[0].message) == (f"{keys[:300]}... are not read by the resnet model (it reads: {RESNET_READS}); "
                                      f"ignored ({mine})")
    if "MUTANT_UNDER_TEST" not in os.environ:  # under mutmut its trampoline is the caller
        assert caught[0].filename == __file__


def test_c_suggests_a_yml_file_and_only_a_close_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "exp1.yml").write_text("seed: 1\n")
    names = "article, large, small, transfer"
    cases = {
        "mine/exp1.yaml": "config file not found: mine/exp1.yaml; did you mean mine/exp1.yml?",
        "mine/abc1.yml": f"config file not found: mine/abc1.yml (expected a YAML file or a built-in config name: "
                         f"{names})",  # as close as 0.67 to exp1.yml: too far to suggest
        # A name with a folder is a file's, never a built-in config's.
        "mine/small": f"config file not found: mine/small (expected a YAML file or a built-in config name: {names})",
    }
    for given, message in cases.items():
        result = CliRunner().invoke(main, ["config", "resolve", "-c", given])
        assert (result.exit_code, result.stderr) == (1, f"Error: {message}\n"), given

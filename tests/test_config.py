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


@pytest.mark.parametrize("override, message", [
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
     "data.image_size, data.resize, data.validation_split, data.test_split, data.cache_dir, data.workers"),
    ("=3", "--set expects KEY=VALUE, e.g. train.epochs=1; got '=3'"),
])
def test_more_bad_values_name_key_value_and_source(override, message):
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
     "data.image_size, data.resize, data.validation_split, data.test_split, data.cache_dir, data.workers"),
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

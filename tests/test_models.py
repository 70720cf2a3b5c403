"""Every builder and shipped config builds on tiny images, trains a step and saves; transfer backbones."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from catdog.backbones import BACKBONES
from catdog.config import MODEL_READS, config_from_dict, load_config
from catdog.errors import CatdogError, ConfigError
from catdog.layers import ImagenetPreprocessing, L2Pooling2D
from catdog.models import MODELS, build_model

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
SIZE = 32


def cfg(model: dict | None = None, size: int = SIZE, **rest):
    return config_from_dict({"data": {"image_size": size}, "model": model or {}, **rest})


def pixels(n: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def train_one_step(model: keras.Model, x: np.ndarray) -> float:
    """One optimizer step, run eagerly: tracing a graph for a single step costs far more time."""
    y = np.arange(len(x)) % 2
    if model.output_shape[-1] == 1:
        model.compile("adam", "binary_crossentropy", run_eagerly=True)
        y = y.reshape(-1, 1).astype("float32")
    else:
        model.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    return float(model.train_on_batch(x, y))


def infer(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


AUGMENT = {"flip": True, "rotation": 0.1, "zoom": 0.1, "translation": 0.1, "contrast": 0.2}
SMALL_BLOCKS = [{"filters": 4, "convs": 2, "batch_norm": True, "pool": "l2", "dropout": 0.1},
                {"filters": 8, "pool": "average"}]


@pytest.mark.parametrize("model", [
    {"name": "article"},
    {"name": "article", "head": "sigmoid", "pool": "l2", "padding": "same", "dense_units": 8, "dropout": 0.2},
    {"name": "cnn"},
    {"name": "cnn", "blocks": SMALL_BLOCKS, "top": "global_average", "dense_units": 8, "dropout": 0.3, **AUGMENT},
    {"name": "resnet", "blocks": [{"filters": 4, "convs": 2}, {"filters": 8, "strides": 2, "pool": "none"}]},
    {"name": "resnet"},
    {"name": "xception", "blocks": [{"filters": 4, "convs": 2}, {"filters": 8}], **AUGMENT},
    {"name": "xception"},
], ids=lambda m: "-".join(f"{k}" for k in m if k != "name") and f"{m['name']}-custom" or m["name"])
def test_builder_trains_a_step_and_saves(model, tmp_path):
    net = build_model(cfg(model), 2)
    x = pixels()
    assert np.isfinite(train_one_step(net, x))
    probs = infer(net, x)
    assert probs.shape == (4, 1 if model.get("head") == "sigmoid" else 2)
    assert np.all((probs >= 0) & (probs <= 1))
    net.save(tmp_path / "m.keras")
    np.testing.assert_allclose(infer(keras.models.load_model(tmp_path / "m.keras"), x), probs, rtol=1e-5, atol=1e-6)


def test_every_registered_builder_is_covered():
    assert set(MODELS) == {"article", "cnn", "resnet", "xception", "transfer"}


def test_article_parameter_count_follows_the_article():
    # 10 filters of 5x5x3 plus biases; 32-5+1 = 28 -> pooled 14x14x10 features into 2 units.
    net = build_model(cfg(), 2)
    assert net.get_layer("conv").count_params() == 5 * 5 * 3 * 10 + 10
    assert net.get_layer("output").count_params() == 14 * 14 * 10 * 2 + 2
    assert net.count_params() == 760 + 3922


def test_article_at_300_has_the_articles_shapes():
    net = build_model(cfg(size=300), 2)
    assert net.get_layer("conv").output.shape == (None, 296, 296, 10)
    assert net.get_layer("pool").output.shape == (None, 148, 148, 10)


def test_cnn_follows_its_blocks():
    net = build_model(cfg({"name": "cnn", "blocks": SMALL_BLOCKS}), 2)
    names = [layer.name for layer in net.layers]
    assert [n for n in names if "_conv" in n] == ["block1_conv1", "block1_conv2", "block2_conv1"]
    assert [n for n in names if "_bn" in n] == ["block1_bn1", "block1_bn2"]
    assert isinstance(net.get_layer("block1_pool"), L2Pooling2D)
    assert isinstance(net.get_layer("block2_pool"), keras.layers.AveragePooling2D)
    # 32 -> 16 -> 8 pixels, 8 channels, flattened.
    assert net.get_layer("flatten").output.shape == (None, 8 * 8 * 8)
    # A batch-normalised conv has no bias.
    assert net.get_layer("block1_conv1").count_params() == 3 * 3 * 3 * 4


def test_resnet_downsamples_by_stride_and_pool():
    net = build_model(cfg({"name": "resnet",
                           "blocks": [{"filters": 4}, {"filters": 8, "strides": 2, "pool": "none"}]}), 2)
    # stem /2 -> 16, block1 pool /2 -> 8, block2 stride 2 -> 4.
    assert net.get_layer("block2_unit1_out").output.shape == (None, 4, 4, 8)
    assert net.get_layer("block2_unit1_proj_conv").output.shape == (None, 4, 4, 8)


@pytest.mark.parametrize("name", ["resnet", "xception"])
def test_stem_pool_quarters_the_input_before_the_blocks(name):
    blocks = [{"filters": 4}, {"filters": 8}]
    plain = build_model(cfg({"name": name, "blocks": blocks}), 2)
    pooled = build_model(cfg({"name": name, "blocks": blocks, "stem_pool": True}), 2)
    with pytest.raises(ValueError):
        plain.get_layer("stem_pool")
    # 32 -> stem conv /2 -> 16 -> 3x3 stride-2 pool -> 8; the blocks then see half the width.
    assert pooled.get_layer("stem_pool").output.shape == (None, 8, 8, 4)
    assert plain.count_params() == pooled.count_params()  # pooling has no weights
    assert np.isfinite(train_one_step(pooled, pixels()))


def test_augmentation_sits_after_the_input_and_only_trains():
    net = build_model(cfg({"name": "cnn", **AUGMENT}), 2)
    # Flip, rotation, zoom and translation are one warp (catdog.layers.RandomGeometry).
    assert [layer.name for layer in net.layers[1:4]] == ["geometry", "contrast", "rescale"]
    flip_only = build_model(cfg({"name": "cnn", "flip": True}), 2)
    assert [layer.name for layer in flip_only.layers[1:3]] == ["flip", "rescale"]
    x = pixels(8)
    inference = infer(net, x)
    np.testing.assert_array_equal(inference, infer(net, x))
    assert not np.allclose(inference, keras.ops.convert_to_numpy(net(x, training=True)))


def test_same_seed_builds_same_weights():
    a, b = build_model(cfg({"name": "resnet"}), 2), build_model(cfg({"name": "resnet"}), 2)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_unknown_model_name_is_one_line():
    with pytest.raises(ConfigError, match=r"^model.name must be one of article, cnn, resnet, transfer, xception; "
                                          r"got 'vgg'$"):
        build_model(cfg({"name": "vgg"}), 2)


def test_sigmoid_head_needs_two_classes():
    with pytest.raises(ConfigError, match="^model.head sigmoid needs exactly 2 classes; got 3$"):
        build_model(cfg({"head": "sigmoid"}), 3)


# --- transfer -------------------------------------------------------------------------------

def transfer(backbone: str, weights: str = "none", **model):
    return cfg({"name": "transfer", "backbone": backbone, "weights": weights, **model})


def test_transfer_trains_a_step_and_saves(tmp_path):
    net = build_model(transfer("MobileNetV2", dropout=0.2, flip=True), 2)
    x = pixels(2)
    assert np.isfinite(train_one_step(net, x))
    net.save(tmp_path / "m.keras")
    np.testing.assert_allclose(infer(keras.models.load_model(tmp_path / "m.keras"), x), infer(net, x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backbone", ["efficientnetb0", "ResNet50"])
def test_transfer_backbones_build(backbone):
    net = build_model(transfer(backbone), 2)
    assert isinstance(net.get_layer("backbone"), keras.Model)
    assert infer(net, pixels(2)).shape == (2, 2)


def test_transfer_backbone_names_ignore_case_and_separators():
    net = build_model(transfer("mobilenet_v2"), 2)
    assert net.get_layer("backbone").count_params() == keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(SIZE, SIZE, 3)).count_params()


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(ConfigError) as err:
        build_model(transfer("AlexNet"), 2)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith("model.backbone must be one of EfficientNetB0, ")
    assert "MobileNetV2" in line and "ResNet50" in line and line.endswith("got 'AlexNet'")


def backbone_input(net: keras.Model, x: np.ndarray) -> np.ndarray:
    """What the backbone receives for raw pixels `x`: the output of the layer just before it."""
    names = [layer.name for layer in net.layers]
    before = net.layers[names.index("backbone") - 1]
    return infer(keras.Model(net.input, before.output), x)


@pytest.mark.parametrize("backbone,module", [("MobileNetV2", "mobilenet_v2"), ("ResNet50", "resnet50")])
def test_transfer_preprocessing_matches_the_backbones_own(backbone, module):
    net = build_model(transfer(backbone), 2)
    x = pixels(2)
    want = getattr(keras.applications, module).preprocess_input(x.copy())
    np.testing.assert_allclose(backbone_input(net, x), want, rtol=1e-5, atol=1e-4)


def test_efficientnet_gets_raw_pixels_and_scales_them_itself():
    net = build_model(transfer("EfficientNetB0"), 2)
    x = pixels(2)
    assert not any(isinstance(layer, ImagenetPreprocessing) for layer in net.layers)
    np.testing.assert_array_equal(backbone_input(net, x), x)
    inner = net.get_layer("backbone")
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in inner.layers)


def test_imagenet_without_network_names_the_local_file_alternative(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ConfigError) as err:
        build_model(transfer("MobileNetV2", "imagenet"), 2)
    line = str(err.value)
    assert isinstance(err.value, CatdogError) and "\n" not in line
    assert line.startswith("model.weights imagenet: cannot download the MobileNetV2 ImageNet weights (URL fetch")
    assert line.endswith("set model.weights: /path/to/file.h5")


@pytest.mark.parametrize("suffix", [".weights.h5", ".h5"])
def test_transfer_loads_a_local_weights_file(tmp_path, suffix):
    source = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    # Distinct values, so a match cannot come from the same seeded initialisation.
    source.set_weights([w + 0.5 for w in source.get_weights()])
    path = tmp_path / f"mobilenetv2{suffix}"
    if suffix == ".h5":  # the legacy layout of the files keras.applications downloads
        import h5py
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, source)
    else:
        source.save_weights(path)
    net = build_model(transfer("MobileNetV2", str(path)), 2)
    for got, want in zip(net.get_layer("backbone").get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_missing_weights_file_is_one_line(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(ConfigError, match=r"^model.weights must be imagenet, none or a weights file; "
                                          rf"got '{path}' \(file not found\)$"):
        build_model(transfer("MobileNetV2", str(path)), 2)


def test_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "other.weights.h5"
    other = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(3, 3)])
    other.save_weights(path)
    with pytest.raises(ConfigError, match=rf"^model.weights '{path}' does not fit MobileNetV2 \("):
        build_model(transfer("MobileNetV2", str(path)), 2)


def test_backbone_table_names_real_applications():
    for ctor, mode in BACKBONES.values():
        assert hasattr(keras.applications, ctor) and mode in (None, "tf", "caffe", "torch")


# --- shipped configs ------------------------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_passes_the_checks_and_trains_a_step(path):
    from catdog.models import check_model
    from catdog.plan import check_config

    config = load_config(path)
    assert check_config(config)
    check_model(config)  # without fetching ImageNet weights: tests never touch the network
    # Tiny images and no download: the config's architecture, not its data or weights, is under test.
    config = load_config(path, [f"data.image_size={SIZE}", "model.weights=none"])
    net = build_model(config, 2)
    assert np.isfinite(train_one_step(net, pixels(2)))


def test_the_shipped_configs_are_there():
    assert {"small.yaml", "large.yaml", "transfer.yaml"} <= {p.name for p in CONFIGS}


def test_image_too_small_for_the_backbone_is_one_line():
    with pytest.raises(ConfigError, match=r"^model.backbone MobileNetV2: .*32.* \(data.image_size \[16, 16\]\)$"):
        build_model(cfg({"name": "transfer", "backbone": "MobileNetV2"}, size=16), 2)


def test_not_pretrained_builds_the_architecture_without_weights(monkeypatch):
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("no download expected"))
    net = build_model(transfer("MobileNetV2", "imagenet"), 2, pretrained=False)
    assert isinstance(net.get_layer("backbone"), keras.Model)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_summarises_without_network(path, monkeypatch):
    from click.testing import CliRunner
    from keras.src.utils import file_utils

    from catdog.cli import main

    monkeypatch.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("no download expected"))
    result = CliRunner().invoke(main, ["summary", "-c", str(path), "--set", f"data.image_size={SIZE}"])
    assert result.exit_code == 0, result.output
    assert "total params:" in result.output


# --- which keys each model reads (config.MODEL_READS) -------------------------------------------

# A value other than the default for every model.* key and every block key.
OTHER = {"filters": 6, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "gelu", "pool": "average",
         "pool_size": 3, "head": "sigmoid", "stem_pool": True, "blocks": [{"filters": 6}], "top": "global_average",
         "dense_units": 6, "dropout": 0.2, "flip": True, "rotation": 0.1, "zoom": 0.1, "translation": 0.1,
         "contrast": 0.2, "backbone": "efficientnetb0", "weights": "imagenet", "freeze_epochs": 2}
OTHER_IN_BLOCK = {"filters": 6, "kernel_size": 5, "strides": 2, "padding": "valid", "convs": 2, "batch_norm": True,
                  "pool": "average", "pool_size": 3, "dropout": 0.1}
# Not the architecture's: the trainer reads freeze_epochs, and a transfer model's weights are tested
# above (loading them here would need the network).
NOT_BUILT = {"freeze_epochs", "weights"}
READ_BASE = {"article": {}, "cnn": {"blocks": [{"filters": 4}, {"filters": 8}]},
             "resnet": {"blocks": [{"filters": 4}, {"filters": 8}]},
             "xception": {"blocks": [{"filters": 4}, {"filters": 8}]}, "transfer": {"backbone": "MobileNetV2"}}


def architecture(model: dict) -> tuple[str, list]:
    keras.backend.clear_session()  # the same automatic layer names each time
    net = build_model(cfg({"dense_units": 4, **model}), 2, pretrained=False)
    return net.to_json(), [w.tolist() for w in net.get_weights()]


def test_the_other_values_cover_every_key():
    import dataclasses

    from catdog.config import BlockConfig, ModelConfig

    assert set(OTHER) == {f.name for f in dataclasses.fields(ModelConfig)} - {"name"}
    assert set(OTHER_IN_BLOCK) == {f.name for f in dataclasses.fields(BlockConfig)}
    assert set(MODEL_READS) == set(MODELS)


def with_unread_keys_changed(name: str) -> tuple[dict, dict]:
    """A small config of model `name`, and the same with every key MODEL_READS leaves out changed."""
    reads = MODEL_READS[name]
    base = {"name": name, **READ_BASE[name]}
    changed = {**base, **{k: v for k, v in OTHER.items() if k not in reads.keys}}
    if "blocks" in reads.keys:
        changed["blocks"] = [{**b, **{k: v for k, v in OTHER_IN_BLOCK.items() if k not in reads.block_keys}}
                             for b in base["blocks"]]
    return base, changed


@pytest.mark.parametrize("name", sorted(READ_BASE))
def test_a_model_ignores_the_keys_it_is_not_declared_to_read(name):
    """`config resolve` and a run's config.yaml leave out the keys MODEL_READS does not list for the
    model: changing every one of them builds the same model, weights included."""
    base, changed = with_unread_keys_changed(name)
    before = architecture(base)
    assert architecture(changed) == before


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(READ_BASE))
def test_every_key_a_model_is_declared_to_read_changes_it(name):
    """Nothing MODEL_READS lists is shown to no effect: changing any one key changes the model."""
    reads = MODEL_READS[name]
    base, _ = with_unread_keys_changed(name)
    before = architecture(base)[0]
    for key in sorted(set(reads.keys) - NOT_BUILT):
        assert architecture({**base, key: OTHER[key]})[0] != before, key
    for key in reads.block_keys:
        blocks = [{**base["blocks"][0], key: OTHER_IN_BLOCK[key]}, *base["blocks"][1:]]
        assert architecture({**base, "blocks": blocks})[0] != before, key

"""Feature maps, filters and HiResCAM on tiny models built here (TensorFlow, and JAX in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers

from catdog.config import load_config
from catdog.errors import ImageError
from catdog.inspection import InspectionError, feature_maps, first_conv_filters, hires_cam
from catdog.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def article(size: int = 32, *overrides: str) -> keras.Model:
    return build_model(load_config(None, [f"data.image_size={size}", *overrides]), 2)


def photo(height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def residual_with_backbone() -> keras.Model:
    """A transfer-learning shape: a sub-model backbone with a skip connection, then GAP."""
    inner = keras.Input((16, 16, 3))
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv1")(inner)
    a = layers.MaxPooling2D(name="b_pool")(a)
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="b_conv2")(a)
    backbone = keras.Model(inner, layers.Add()([a, b]), name="backbone")
    image = keras.Input((16, 16, 3), name="image")
    x = backbone(layers.Rescaling(1 / 255)(image))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(image, layers.Dense(3, activation="softmax", name="output")(x))


def test_feature_maps_match_layer_output_shapes():
    model = article()
    maps = feature_maps(model, photo())
    assert [(m.name, m.kind, m.layer_type, m.shape) for m in maps] == [
        ("conv", "conv", "Conv2D", (28, 28, 10)), ("pool", "pool", "MaxPooling2D", (14, 14, 10))]
    assert maps[0].detail == "5x5 x10" and maps[1].detail == "2x2"
    for m in maps:
        assert m.maps.shape == m.shape == tuple(model.get_layer(m.name).output.shape[1:])
        assert m.maps.dtype == np.float32
    assert maps[0].maps.min() >= 0  # after ReLU


def test_feature_maps_resize_a_photo_of_another_size_and_see_l2_pooling():
    maps = feature_maps(article(32, "model.pool=l2"), photo(50, 40))
    assert [(m.layer_type, m.shape) for m in maps] == [("Conv2D", (28, 28, 10)), ("L2Pooling2D", (14, 14, 10))]


def test_feature_maps_reach_into_a_nested_backbone():
    maps = feature_maps(residual_with_backbone(), photo(16, 16))
    assert [(m.name, m.shape) for m in maps] == [
        ("b_conv1", (16, 16, 4)), ("b_pool", (8, 8, 4)), ("b_conv2", (8, 8, 4))]


def test_first_conv_filters_are_the_kernel():
    model = article()
    filters = first_conv_filters(model)
    assert filters.shape == (5, 5, 3, 10)
    np.testing.assert_array_equal(filters, keras.ops.convert_to_numpy(model.get_layer("conv").kernel))


def test_a_model_without_convolutions_has_no_filters():
    image = keras.Input((8, 8, 3))
    model = keras.Model(image, layers.Dense(2)(layers.Flatten()(image)), name="flat")
    with pytest.raises(InspectionError, match="model 'flat' has no convolution layer, so it has no filters to show"):
        first_conv_filters(model)
    with pytest.raises(InspectionError, match="no convolution layer for HiResCAM"):
        hires_cam(model, photo(8, 8))


def test_hires_cam_map_has_the_image_size_and_values_in_0_1():
    model = article()
    image = photo(40, 56)
    heatmap, index, probabilities = hires_cam(model, image)
    assert heatmap.shape == (40, 56)
    assert heatmap.dtype == np.float32
    assert not np.isnan(heatmap).any()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert probabilities.shape == (2,)
    assert index == int(np.argmax(probabilities))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_hires_cam_probabilities_are_the_model_s():
    model = article()
    image = photo()
    result = hires_cam(model, image)
    np.testing.assert_allclose(result.probabilities, model.predict(image[None].astype("float32"), verbose=0)[0],
                               rtol=1e-5, atol=1e-6)


def test_hires_cam_sigmoid_head_gives_both_classes():
    model = article(32, "model.head=sigmoid")
    image = photo()
    p = float(model.predict(image[None].astype("float32"), verbose=0)[0, 0])
    for index in (0, 1):
        result = hires_cam(model, image, class_index=index)
        assert result.class_index == index
        np.testing.assert_allclose(result.probabilities, [1 - p, p], atol=1e-6)
        assert result.heatmap.shape == (32, 32) and 0 <= result.heatmap.min() <= result.heatmap.max() <= 1
    with pytest.raises(InspectionError, match=r"class_index must be in \[0, 1\]; got 2"):
        hires_cam(model, image, class_index=2)


def test_hires_cam_with_no_gradient_is_zeros_not_nan():
    model = article()
    output = model.get_layer("output")
    output.kernel.assign(np.zeros(output.kernel.shape, dtype="float32"))
    heatmap, _, _ = hires_cam(model, photo())
    assert not np.isnan(heatmap).any() and heatmap.max() == 0.0


def test_hires_cam_through_a_backbone_with_a_skip_connection():
    model = residual_with_backbone()
    heatmap, index, probabilities = hires_cam(model, photo(16, 16), class_index=2)
    assert heatmap.shape == (16, 16) and index == 2 and probabilities.shape == (3,)
    assert 0 <= heatmap.min() <= heatmap.max() <= 1


def test_hires_cam_leaves_feature_maps_working():
    # Building the heat map's head re-calls the layers after the feature map; the maps must not lose them.
    model = article()
    hires_cam(model, photo())
    hires_cam(model, photo(seed=1))
    assert [m.name for m in feature_maps(model, photo())] == ["conv", "pool"]


def test_an_image_must_be_rgb():
    with pytest.raises(ImageError, match=r"expected an RGB image of shape \(height, width, 3\); got shape \(32, 32\)"):
        feature_maps(article(), np.zeros((32, 32), dtype=np.uint8))


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from catdog.inspection import hires_cam
    assert keras.backend.backend() == "jax"
    image = np.load(sys.argv[1])
    out = {}
    for path in sys.argv[2:]:
        model = keras.models.load_model(path)
        for index in (0, 1):
            heatmap, _, probabilities = hires_cam(model, image, class_index=index)
            out[f"{path}:{index}"] = [heatmap.tolist(), probabilities.tolist()]
    print(json.dumps(out))
""")


# Slow (8 s: a JAX process): the default suite checks the heat map on TensorFlow, and every
# command, `show` included, on JAX (test_backends).
@pytest.mark.slow
def test_hires_cam_under_jax_matches_tensorflow(tmp_path):
    # One subprocess for both heads: starting JAX costs more than the heat maps.
    pytest.importorskip("jax")
    image = photo(20, 28)
    np.save(tmp_path / "image.npy", image)
    models = {}
    for head in ("softmax", "sigmoid"):
        models[str(tmp_path / f"{head}.keras")] = model = article(24, f"model.head={head}")
        model.save(tmp_path / f"{head}.keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(tmp_path / "image.npy"), *models],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    for path, model in models.items():
        for index in (0, 1):
            heatmap, probabilities = (np.array(a, dtype=np.float32) for a in answers[f"{path}:{index}"])
            expected = hires_cam(model, image, class_index=index)
            assert heatmap.shape == (20, 28) and not np.isnan(heatmap).any()
            np.testing.assert_allclose(probabilities, expected.probabilities, atol=1e-5)
            np.testing.assert_allclose(heatmap, expected.heatmap, atol=1e-3)


def test_maps_say_whether_they_come_after_the_activation_or_before_batch_norm():
    from catdog.plots import maps_description

    described = {m.name: maps_description(m) for m in feature_maps(article(), photo())}
    assert described == {"conv": "each filter's response after the relu activation",
                         "pool": "each filter's map after pooling"}
    resnet = build_model(load_config(None, ["model.name=resnet", "data.image_size=32",
                                            "model.blocks=[{filters: 8}, {filters: 16}]"]), 2)
    maps = {m.name: m for m in feature_maps(resnet, photo())}
    assert maps_description(maps["block1_unit1_a_conv"]) == (
        "each filter's raw response, before batch norm and the relu activation: values can be negative")
    assert maps_description(maps["block2_unit1_b_conv"]) == (
        "each filter's raw response, before batch norm and the sum with the shortcut: values can be negative")
    assert maps_description(maps["block2_unit1_proj_conv"]) == maps_description(maps["block2_unit1_b_conv"])
    assert maps["block1_unit1_a_conv"].maps.min() < 0  # what the subtitle warns of
    # A sub-model's convolutions (relu of their own) say so too.
    inner = {m.name: maps_description(m) for m in feature_maps(residual_with_backbone(), photo(16, 16))}
    assert inner["b_conv2"] == "each filter's response after the relu activation"


@pytest.mark.parametrize("name", ["article", "small", "large", "transfer"])
def test_hires_cam_leaves_every_built_in_model_whole(name):
    # The heat map's head, where a shortcut passes the conv, once rewrote the model's input history:
    # feature maps, the summary and saving then failed with "could not find node key" (serve ran
    # them in that order on every ResNet run).
    overrides = ["data.image_size=32", "model.weights=none"] if name == "transfer" else ["data.image_size=32"]
    model = build_model(load_config(name, overrides), 2, pretrained=False)
    hires_cam(model, photo())
    hires_cam(model, photo(seed=1))
    assert feature_maps(model, photo())
    model.get_config()


# --- The map must light what decides the class: models whose weights are set by hand so that one
# corner of the photo speaks for class 1 and the opposite corner for class 0.

TOP_LEFT, BOTTOM_RIGHT = (slice(0, 16), slice(0, 16)), (slice(16, 32), slice(16, 32))


def share_in(heatmap: np.ndarray, corner: tuple[slice, slice]) -> float:
    assert heatmap.sum() > 0, "the map is empty: no evidence shown for the class"
    return float(heatmap[corner].sum() / heatmap.sum())


def corner_article(head: str) -> keras.Model:
    """The article's model (conv 5x5, 2x2 max pool, flatten, dense) at 32x32: filter 0 passes each
    pixel's brightness; the dense layer counts the pooled map's top-left 6x6 cells (image rows and
    columns 2-13) twice for class 1 and its bottom-right 6x6 (18-29) once against it, and nothing else."""
    model = article(32, f"model.head={head}")
    conv = model.get_layer("conv")
    kernel = np.zeros(conv.kernel.shape, "float32")
    kernel[2, 2, :, 0] = 1 / 3  # the centre pixel's mean of red, green and blue
    conv.kernel.assign(kernel)
    conv.bias.assign(np.zeros(conv.bias.shape, "float32"))
    weights = np.zeros((14, 14, 10), "float32")  # the pooled map the head flattens
    weights[:6, :6, 0], weights[8:, 8:, 0] = 2.0, -1.0
    output = model.get_layer("output")
    if head == "sigmoid":  # the one logit speaks for class 1
        kernel = weights.reshape(-1, 1)
    else:  # class 1's logit minus class 0's is the same evidence, split between the two, and
        # both logits also count every cell of filter 0 once: softmax cancels that, so must the map
        shared = np.zeros_like(weights)
        shared[..., 0] = 1.0
        kernel = np.stack([(shared - weights / 2).ravel(), (shared + weights / 2).ravel()], axis=-1)
    output.kernel.assign(kernel)
    output.bias.assign(np.zeros(output.bias.shape, "float32"))
    return model


def corner_gap() -> keras.Model:
    """Conv 3x3 (one filter for red, one for green), 2x2 max pool, global average, dense: red
    speaks for class 1, green for class 0, grey for neither."""
    image = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 255)(image)
    conv = layers.Conv2D(2, 3, padding="same", activation="relu")
    x = layers.GlobalAveragePooling2D()(layers.MaxPooling2D()(conv(x)))
    output = layers.Dense(2, activation="softmax")
    model = keras.Model(image, output(x))
    kernel = np.zeros((3, 3, 3, 2), "float32")
    kernel[1, 1, :, 0] = [1, -1, -1]  # red
    kernel[1, 1, :, 1] = [-1, 1, -1]  # green
    conv.set_weights([kernel, np.zeros(2, "float32")])
    output.set_weights([np.array([[0, 4], [4, 0]], "float32"), np.zeros(2, "float32")])
    return model


def textured(seed: int = 0) -> np.ndarray:
    """Grey of random brightness everywhere (60-200): what a flatten head must not blame at large."""
    grey = np.random.default_rng(seed).integers(60, 200, (32, 32, 1), dtype=np.uint8)
    return np.repeat(grey, 3, axis=-1)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_hires_cam_on_a_flatten_head_lights_the_corner_that_decides_the_class(head):
    model, image = corner_article(head), textured()
    heatmap, index, probabilities = hires_cam(model, image)
    assert index == 1 and probabilities[1] > 0.5  # the top-left counts twice
    # Each position's own gradient: the top-left for class 1; averaged over the map (Grad-CAM),
    # the positive mean lights the grey everywhere, about a quarter of it in this corner.
    assert share_in(heatmap, TOP_LEFT) > 0.95
    # The evidence for class 0 is the corner counted against class 1 (with the averaged
    # gradient: negative, so nothing).
    assert share_in(hires_cam(model, image, class_index=0).heatmap, BOTTOM_RIGHT) > 0.95


def test_hires_cam_on_a_global_average_head_lights_the_corner_that_decides_the_class():
    image = textured()
    image[2:12, 2:12] = [230, 20, 20]  # red, top left: class 1
    image[22:28, 22:28] = [20, 230, 20]  # less green, bottom right: class 0
    model = corner_gap()
    heatmap, index, _ = hires_cam(model, image)
    assert index == 1
    assert share_in(heatmap, TOP_LEFT) > 0.95
    assert share_in(hires_cam(model, image, class_index=0).heatmap, BOTTOM_RIGHT) > 0.95


def test_hires_cam_with_a_branch_joining_the_head_leaves_the_model_whole():
    # A head that also reads an earlier stage (pooled, then joined to the last feature map's): the
    # heat map's head takes that branch as an input of its own, instead of rebuilding the path
    # from the image, which rewrote the model's input history ("could not find node key").
    image = keras.Input((16, 16, 3), name="image")
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="early")(layers.Rescaling(1 / 255)(image))
    b = layers.Conv2D(4, 3, padding="same", activation="relu", name="late")(layers.MaxPooling2D()(a))
    joined = layers.Concatenate()([layers.GlobalAveragePooling2D()(a), layers.GlobalAveragePooling2D()(b)])
    model = keras.Model(image, layers.Dense(2, activation="softmax", name="output")(joined))
    heatmap, _, probabilities = hires_cam(model, photo(16, 16))
    assert heatmap.shape == (16, 16) and probabilities.shape == (2,)
    hires_cam(model, photo(16, 16, seed=1))
    assert [m.name for m in feature_maps(model, photo(16, 16))][:1] == ["early"]
    model.get_config()


def test_grad_cam_is_the_old_name_of_hires_cam():
    from catdog.inspection import grad_cam

    model, image = article(), photo()
    with pytest.warns(DeprecationWarning, match="grad_cam is now hires_cam"):
        old = grad_cam(model, image)
    np.testing.assert_array_equal(old.heatmap, hires_cam(model, image).heatmap)

"""Feature maps, filters and Grad-CAM on tiny models built here (TensorFlow, and JAX in a subprocess)."""

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
from catdog.inspection import InspectionError, feature_maps, first_conv_filters, grad_cam
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
    with pytest.raises(InspectionError, match="no convolution layer for Grad-CAM"):
        grad_cam(model, photo(8, 8))


def test_grad_cam_map_has_the_image_size_and_values_in_0_1():
    model = article()
    image = photo(40, 56)
    heatmap, index, probabilities = grad_cam(model, image)
    assert heatmap.shape == (40, 56)
    assert heatmap.dtype == np.float32
    assert not np.isnan(heatmap).any()
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert probabilities.shape == (2,)
    assert index == int(np.argmax(probabilities))
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)


def test_grad_cam_probabilities_are_the_model_s():
    model = article()
    image = photo()
    result = grad_cam(model, image)
    np.testing.assert_allclose(result.probabilities, model.predict(image[None].astype("float32"), verbose=0)[0],
                               rtol=1e-5, atol=1e-6)


def test_grad_cam_sigmoid_head_gives_both_classes():
    model = article(32, "model.head=sigmoid")
    image = photo()
    p = float(model.predict(image[None].astype("float32"), verbose=0)[0, 0])
    for index in (0, 1):
        result = grad_cam(model, image, class_index=index)
        assert result.class_index == index
        np.testing.assert_allclose(result.probabilities, [1 - p, p], atol=1e-6)
        assert result.heatmap.shape == (32, 32) and 0 <= result.heatmap.min() <= result.heatmap.max() <= 1
    with pytest.raises(InspectionError, match=r"class_index must be in \[0, 1\]; got 2"):
        grad_cam(model, image, class_index=2)


def test_grad_cam_with_no_gradient_is_zeros_not_nan():
    model = article()
    output = model.get_layer("output")
    output.kernel.assign(np.zeros(output.kernel.shape, dtype="float32"))
    heatmap, _, _ = grad_cam(model, photo())
    assert not np.isnan(heatmap).any() and heatmap.max() == 0.0


def test_grad_cam_through_a_backbone_with_a_skip_connection():
    model = residual_with_backbone()
    heatmap, index, probabilities = grad_cam(model, photo(16, 16), class_index=2)
    assert heatmap.shape == (16, 16) and index == 2 and probabilities.shape == (3,)
    assert 0 <= heatmap.min() <= heatmap.max() <= 1


def test_grad_cam_leaves_feature_maps_working():
    # Building Grad-CAM's head re-calls the layers after the conv; the maps must not lose them.
    model = article()
    grad_cam(model, photo())
    grad_cam(model, photo(seed=1))
    assert [m.name for m in feature_maps(model, photo())] == ["conv", "pool"]


def test_an_image_must_be_rgb():
    with pytest.raises(ImageError, match=r"expected an RGB image of shape \(height, width, 3\); got shape \(32, 32\)"):
        feature_maps(article(), np.zeros((32, 32), dtype=np.uint8))


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    from catdog.inspection import grad_cam
    assert keras.backend.backend() == "jax"
    image = np.load(sys.argv[1])
    out = {}
    for path in sys.argv[2:]:
        model = keras.models.load_model(path)
        for index in (0, 1):
            heatmap, _, probabilities = grad_cam(model, image, class_index=index)
            out[f"{path}:{index}"] = [heatmap.tolist(), probabilities.tolist()]
    print(json.dumps(out))
""")


def test_grad_cam_under_jax_matches_tensorflow(tmp_path):
    # One subprocess for both heads: starting JAX costs more than the Grad-CAMs.
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
            expected = grad_cam(model, image, class_index=index)
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
def test_grad_cam_leaves_every_built_in_model_whole(name):
    # Grad-CAM's head, where a shortcut passes the conv, once rewrote the model's input history:
    # feature maps, the summary and saving then failed with "could not find node key" (serve ran
    # them in that order on every ResNet run).
    overrides = ["data.image_size=32", "model.weights=none"] if name == "transfer" else ["data.image_size=32"]
    model = build_model(load_config(name, overrides), 2, pretrained=False)
    grad_cam(model, photo())
    grad_cam(model, photo(seed=1))
    assert feature_maps(model, photo())
    model.get_config()

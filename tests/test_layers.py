"""L2Pooling2D against NumPy, ImagenetPreprocessing against keras.applications, RandomGeometry's
warps against exact NumPy moves, and save/load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from catdog.layers import ImagenetPreprocessing, L2Pooling2D, RandomGeometry, affine_transform_matrix


def l2_pool_numpy(x: np.ndarray, size: int, stride: int, padding: str) -> np.ndarray:
    """sqrt(mean(x^2)) over each window; with "same" padding a window holds only real pixels."""
    n, h, w, c = x.shape
    if padding == "valid":
        oh, ow = (h - size) // stride + 1, (w - size) // stride + 1
        top = left = 0
    else:
        oh, ow = -(-h // stride), -(-w // stride)
        top = max((oh - 1) * stride + size - h, 0) // 2
        left = max((ow - 1) * stride + size - w, 0) // 2
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            win = x[:, max(r0, 0):min(r0 + size, h), max(c0, 0):min(c0 + size, w), :]
            out[:, i, j, :] = np.sqrt((win.astype(np.float64) ** 2).mean(axis=(1, 2)))
    return out


@pytest.mark.parametrize("size,stride,padding,shape", [
    (2, None, "valid", (2, 6, 6, 3)),
    (3, 2, "valid", (1, 7, 9, 2)),
    (2, None, "valid", (1, 5, 5, 1)),  # odd size: the last row and column are dropped, as in max pooling
    (3, 2, "same", (2, 7, 8, 2)),
])
def test_l2_pooling_matches_numpy(size, stride, padding, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    got = keras.ops.convert_to_numpy(L2Pooling2D(size, strides=stride, padding=padding)(x))
    want = l2_pool_numpy(x, size, stride or size, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_l2_pooling_of_known_window():
    # One 2x2 window holding 1, 2, 3, 4: sqrt((1 + 4 + 9 + 16) / 4) = sqrt(7.5).
    x = np.array([1, 2, 3, 4], "float32").reshape(1, 2, 2, 1)
    assert float(keras.ops.convert_to_numpy(L2Pooling2D(2)(x))[0, 0, 0, 0]) == pytest.approx(np.sqrt(7.5))


def test_l2_pooling_lies_between_average_and_max():
    x = np.abs(np.random.default_rng(1).normal(size=(2, 8, 8, 4))).astype("float32")
    l2 = keras.ops.convert_to_numpy(L2Pooling2D(2)(x))
    avg = keras.ops.convert_to_numpy(keras.layers.AveragePooling2D(2)(x))
    mx = keras.ops.convert_to_numpy(keras.layers.MaxPooling2D(2)(x))
    assert np.all(l2 >= avg - 1e-6) and np.all(l2 <= mx + 1e-6)


def test_l2_pooling_gradient_is_finite_on_zero_windows():
    import tensorflow as tf

    x = tf.zeros((1, 4, 4, 1))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(L2Pooling2D(2)(x))
    assert np.all(np.isfinite(tape.gradient(y, x).numpy()))


def test_model_with_l2_pooling_saves_and_loads(tmp_path):
    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = L2Pooling2D(2, name="l2")(x)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("l2"), L2Pooling2D)
    assert loaded.get_layer("l2").get_config()["pool_size"] == 2
    x = np.random.default_rng(2).uniform(0, 1, (3, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("mode,module", [
    ("tf", "mobilenet_v2"), ("caffe", "resnet50"), ("torch", "densenet"),
])
def test_imagenet_preprocessing_matches_keras_applications(mode, module):
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    want = getattr(keras.applications, module).preprocess_input(pixels.copy())
    got = keras.ops.convert_to_numpy(ImagenetPreprocessing(mode)(pixels))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_imagenet_preprocessing_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode must be one of tf, caffe, torch; got 'bgr'"):
        ImagenetPreprocessing("bgr")


def test_imagenet_preprocessing_saves_and_loads(tmp_path):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, ImagenetPreprocessing("caffe", name="pre")(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("pre").mode == "caffe"


def test_l2_pooling_under_float16_stays_finite():
    import keras
    import numpy as np

    from catdog.layers import L2Pooling2D

    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, :2, :2, 0] = 300.0  # squares overflow float16
    layer = L2Pooling2D(2, dtype="mixed_float16")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.dtype == np.float16 and np.isfinite(out).all()
    assert abs(float(out[0, 0, 0, 0]) - 300.0) < 0.5 and float(out[0, 1, 1, 0]) < 1e-3


def warp(x: np.ndarray, angle=0.0, scale_x=1.0, scale_y=1.0, shift_x=0.0, shift_y=0.0) -> np.ndarray:
    """One fixed warp of a batch through affine_transform_matrix, as RandomGeometry applies it."""
    n, h, w, _ = x.shape
    params = [np.full(n, v, "float32") for v in (angle, scale_x, scale_y, shift_x, shift_y)]
    matrix = affine_transform_matrix(*params, float(h), float(w))
    return keras.ops.convert_to_numpy(keras.ops.image.affine_transform(x, matrix, fill_mode="reflect"))


def pixels(n: int = 2, h: int = 6, w: int = 6) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3)).astype("float32")


def test_affine_matrix_moves_pixels_exactly():
    x = pixels()
    np.testing.assert_allclose(warp(x), x, atol=1e-3)                      # identity
    np.testing.assert_allclose(warp(x, scale_x=-1.0), x[:, :, ::-1], atol=1e-3)  # left-right mirror
    np.testing.assert_allclose(warp(x, shift_x=2.0)[:, :, :4], x[:, :, 2:], atol=1e-3)  # content moves left
    np.testing.assert_allclose(warp(x, shift_y=-1.0)[:, 1:], x[:, :5], atol=1e-3)      # and down
    # A quarter turn about the centre of a square image is an exact rotation of the grid.
    np.testing.assert_allclose(warp(x, angle=np.pi / 2), np.rot90(x, k=1, axes=(1, 2)), atol=1e-3)
    # Zooming out by 2 reads every other pixel around the centre of a 5x5 image.
    odd = pixels(h=5, w=5)
    np.testing.assert_allclose(warp(odd, scale_x=2.0, scale_y=2.0)[:, 1:4, 1:4], odd[:, ::2, ::2], atol=1e-3)


def test_random_geometry_only_trains_and_repeats_with_its_seed():
    x = pixels(8, 16, 16)
    layer = RandomGeometry(True, 0.1, 0.2, 0.1, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    again = keras.ops.convert_to_numpy(RandomGeometry(True, 0.1, 0.2, 0.1, seed=3)(x, training=True))
    np.testing.assert_array_equal(out, again)
    assert out.shape == x.shape and out.dtype == np.float32
    # Each photo gets its own draw.
    assert not np.allclose(out[0], out[1])
    assert out.min() >= 0 and out.max() <= 255


def test_random_geometry_flip_alone_mirrors_or_keeps_each_photo():
    x = pixels(16, 8, 8)
    out = keras.ops.convert_to_numpy(RandomGeometry(flip=True, seed=0)(x, training=True))
    mirrored = [np.allclose(o, xi[:, ::-1], atol=1e-3) for o, xi in zip(out, x, strict=True)]
    kept = [np.allclose(o, xi, atol=1e-3) for o, xi in zip(out, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored) and any(kept)


def test_random_geometry_saves_and_loads(tmp_path):
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, RandomGeometry(True, 0.05, 0.2, 0.1, name="geometry")(inp))
    model.save(tmp_path / "m.keras")
    layer = keras.models.load_model(tmp_path / "m.keras").get_layer("geometry")
    assert (layer.flip, layer.rotation, layer.zoom, layer.translation) == (True, 0.05, 0.2, 0.1)

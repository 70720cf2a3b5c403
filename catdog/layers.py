"""Layers Keras lacks: the article's L2-norm pooling, ImageNet input preprocessing, and one-pass
geometric augmentation."""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="catdog")
class L2Pooling2D(keras.layers.Layer):
    """L2-norm pooling: the square root of the mean of squares over each window.

    The article names it beside max and average pooling. Like them it keeps the channels and
    shrinks height and width by (W - F) / S + 1.
    """

    def __init__(self, pool_size: int = 2, strides: int | None = None, padding: str = "valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides or pool_size
        self.padding = padding
        # float32 whatever the policy: in float16 squares overflow above 256 and the epsilon is 0.
        self._avg = keras.layers.AveragePooling2D(pool_size, self.strides, padding=padding, dtype="float32")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        # A tiny epsilon keeps the gradient of sqrt finite where a window is all zeros (after ReLU).
        return ops.cast(ops.sqrt(self._avg(ops.square(x)) + 1e-12), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return self._avg.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


# ImageNet channel means and deviations on the 0-255 scale, in the order each mode uses them:
# caffe's BGR means and torch's RGB statistics (0.485, 0.456, 0.406 / 0.229, 0.224, 0.225 x 255).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (123.675, 116.28, 103.53)
_TORCH_STD = (58.395, 57.12, 57.375)


@keras.saving.register_keras_serializable(package="catdog")
class ImagenetPreprocessing(keras.layers.Layer):
    """Raw 0-255 RGB pixels to what a keras.applications backbone was trained on.

    Modes follow keras.applications.imagenet_utils: "tf" scales to [-1, 1] (MobileNetV2,
    Xception, ResNetV2); "caffe" turns RGB into BGR and subtracts the ImageNet mean (ResNet50,
    VGG); "torch" subtracts the mean and divides by the standard deviation (DenseNet). As a layer
    it travels inside the saved model.
    """

    MODES = ("tf", "caffe", "torch")

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
            return (x - mean) / ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def affine_transform_matrix(angle, scale_x, scale_y, shift_x, shift_y, height, width):
    """Per-image rows [a0, a1, a2, b0, b1, b2, 0, 0] for keras.ops.image.affine_transform.

    Output pixel p (x right, y down, in pixels) reads input pixel c + R(angle) S (p - c) + shift,
    with c the image centre and S = diag(scale_x, scale_y): a scale above 1 zooms out, a negative
    scale_x mirrors left-right, a positive shift moves the content left or up.
    """
    cos, sin = ops.cos(angle), ops.sin(angle)
    a0, a1, b0, b1 = cos * scale_x, -sin * scale_y, sin * scale_x, cos * scale_y
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a2 = cx - a0 * cx - a1 * cy + shift_x
    b2 = cy - b0 * cx - b1 * cy + shift_y
    zeros = ops.zeros_like(a0)
    return ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="catdog")
class RandomGeometry(keras.layers.Layer):
    """Left-right flip, rotation, zoom and translation as one random affine warp per image.

    The ranges are those of Keras's RandomFlip("horizontal"), RandomRotation(rotation),
    RandomZoom(zoom) and RandomTranslation(translation, translation): an angle within
    +-rotation turns, one scale in [1 - zoom, 1 + zoom] for both axes (above 1 zooms out), a
    shift within +-translation of the height and width. Composing them into one matrix resamples
    each photo once instead of three times; the resampling was a third of a training step of
    configs/small.yaml. Active only while training; at inference the pixels pass unchanged.
    """

    def __init__(self, flip: bool = False, rotation: float = 0.0, zoom: float = 0.0,
                 translation: float = 0.0, fill_mode: str = "reflect", seed: int | None = None, **kwargs):
        # float32 whatever the policy: the warp reads raw 0-255 pixels, before any scaling.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.flip, self.rotation, self.zoom, self.translation = flip, rotation, zoom, translation
        self.fill_mode = fill_mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # TensorFlow's XLA has no kernel for the warp (ImageProjectiveTransformV3): with this off,
        # Keras trains without XLA there instead of failing to compile. JAX's XLA compiles it.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def _uniform(self, n, bound: float):
        return keras.random.uniform((n,), -bound, bound, seed=self.seed_generator)

    def call(self, images, training=None):
        if not training:
            return images
        shape = ops.shape(images)
        n = shape[0]
        height, width = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
        angle = self._uniform(n, 2 * math.pi * self.rotation)
        scale = 1.0 + self._uniform(n, self.zoom)
        scale_x = scale
        if self.flip:
            scale_x = scale * ops.where(keras.random.uniform((n,), seed=self.seed_generator) < 0.5, -1.0, 1.0)
        shift_x = self._uniform(n, self.translation) * width
        shift_y = self._uniform(n, self.translation) * height
        transform = affine_transform_matrix(angle, scale_x, scale, shift_x, shift_y, height, width)
        return ops.image.affine_transform(ops.cast(images, "float32"), transform, interpolation="bilinear",
                                          fill_mode=self.fill_mode)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "rotation": self.rotation, "zoom": self.zoom,
                "translation": self.translation, "fill_mode": self.fill_mode, "seed": self.seed}


@keras.saving.register_keras_serializable(package="catdog")
class TrainingResize(keras.layers.Layer):
    """Shrinks training batches to `size` (height, width): progressive resizing (train.image_sizes).

    Only while training and only when `size` differs from the photos': at inference, and with
    `size` None, the pixels pass unchanged, so the model keeps its declared input and what
    validation, evaluate, predict and export see. Training sets `size` before compiling each
    phase of its schedule (a new size is a new traced step). Bilinear with antialiasing: a plain
    bilinear shrink by more than 2 skips pixels and aliases fine texture such as fur.
    """

    def __init__(self, size: tuple[int, int] | list[int] | None = None, **kwargs):
        # float32 whatever the policy: it resamples raw 0-255 pixels, before any scaling.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.size = None if size is None else (int(size[0]), int(size[1]))
        # TensorFlow's XLA has no kernel for the antialiased resize (ScaleAndTranslate): with this
        # off, Keras trains without XLA there instead of failing to compile. JAX's XLA compiles it.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def call(self, images, training=None):
        size = self.size
        if not training or size is None or tuple(images.shape[1:3]) == size:
            return images
        return ops.image.resize(ops.cast(images, "float32"), size, interpolation="bilinear", antialias=True)

    def compute_output_shape(self, input_shape):
        # The declared shape: what inference gives (a summary shows the model as predict runs it).
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": None if self.size is None else list(self.size)}

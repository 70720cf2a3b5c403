"""Layers Keras lacks: the article's L2-norm pooling and ImageNet input preprocessing."""

from __future__ import annotations

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

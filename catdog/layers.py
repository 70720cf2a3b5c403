"""Layers Keras lacks: the article's L2-norm pooling."""

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
        self._avg = keras.layers.AveragePooling2D(pool_size, self.strides, padding=padding)

    def call(self, inputs):
        # A tiny epsilon keeps the gradient of sqrt finite where a window is all zeros (after ReLU).
        return ops.sqrt(self._avg(ops.square(inputs)) + 1e-12)

    def compute_output_shape(self, input_shape):
        return self._avg.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}

"""Model builders, keyed by `model.name`: each takes the config and returns a Keras model.

Every model starts with Rescaling, so a saved model takes raw 0-255 pixels and nobody has to
remember the preprocessing.
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from catdog.config import Config, ModelConfig
from catdog.errors import ConfigError

Builder = Callable[[ModelConfig, tuple[int, int, int], int], keras.Model]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        MODELS[name] = fn
        return fn
    return wrap


def build_model(config: Config, num_classes: int) -> keras.Model:
    """Build the network named by `config.model.name` for images of `config.data.image_size`.

    Raises:
        ConfigError: the name is not a known model, or the settings do not fit together.
    """
    builder = MODELS.get(config.model.name)
    if builder is None:
        raise ConfigError(f"model.name must be one of {', '.join(sorted(MODELS))}; got {config.model.name!r}")
    height, width = config.data.image_size
    keras.utils.set_random_seed(config.seed)
    return builder(config.model, (height, width, 3), num_classes)


def pooling(kind: str, size: int, name: str | None = None) -> layers.Layer | None:
    """A pooling layer by kind: max, average or l2 (None for "none")."""
    if kind == "none":
        return None
    if kind == "max":
        return layers.MaxPooling2D(size, name=name)
    if kind == "average":
        return layers.AveragePooling2D(size, name=name)
    from catdog.layers import L2Pooling2D

    return L2Pooling2D(size, name=name)


def head(m: ModelConfig, x, num_classes: int):
    """The output layer: num_classes-way softmax, or one sigmoid unit for two classes.

    Its dtype stays float32 so a mixed-precision model still gives a stable softmax/sigmoid.
    """
    if m.head == "sigmoid":
        if num_classes != 2:
            raise ConfigError(f"model.head sigmoid needs exactly 2 classes; got {num_classes}")
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="output")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)


def inputs(shape: tuple[int, int, int]):
    """The input and its scaling of raw 0-255 pixels to [0, 1]."""
    inp = keras.Input(shape=shape, name="image")
    return inp, layers.Rescaling(1.0 / 255, name="rescale")(inp)


@register("article")
def article(m: ModelConfig, shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The article's CNN: one convolution, one pooling, flatten, dense output."""
    inp, x = inputs(shape)
    x = layers.Conv2D(m.filters, m.kernel_size, strides=m.strides, padding=m.padding,
                      activation=m.activation, name="conv")(x)
    pool = pooling(m.pool, m.pool_size, name="pool")
    if pool is not None:
        x = pool(x)
    x = layers.Flatten(name="flatten")(x) if m.top == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    if m.dropout:
        x = layers.Dropout(m.dropout, name="dropout")(x)
    return keras.Model(inp, head(m, x, num_classes), name="article")

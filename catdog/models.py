"""Model builders, keyed by `model.name`: each takes the config and returns a Keras model.

Every model starts with its augmentation (active only while training) and its pixel scaling, so
a saved model takes raw 0-255 pixels and nobody has to remember the preprocessing.

Which `model.*` keys each builder reads is declared once, in catdog.config.MODEL_READS (the
config, which imports no Keras, shows and records only those keys); `register` refuses a builder
without a declaration, and tests/test_models.py checks each declaration against what its builder
builds.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import keras
from keras import layers

from catdog.backbones import backbone
from catdog.config import MODEL_READS, BlockConfig, Config, ModelConfig
from catdog.errors import ConfigError, first_line, shown
from catdog.layers import ImagenetPreprocessing, L2Pooling2D, RandomGeometry, TrainingResize

# Batch-norm running statistics forget at 0.9 per step rather than Keras's 0.99: 2,000 photos make
# ~60 steps an epoch, and slower statistics lag so far behind the weights that validation sits at
# chance for the first epochs.
BN_MOMENTUM = 0.9

# The layer that shrinks training photos for train.image_sizes (catdog.plan sets its size).
RESIZE_LAYER = "training_resize"

# (model keys, input shape, classes, resize): `resize` puts the TrainingResize layer right after the
# input, only for a run with train.image_sizes, so every other run builds exactly the model it did.
Builder = Callable[[ModelConfig, tuple[int, int, int], int, bool], keras.Model]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    if name not in MODEL_READS:
        raise ValueError(f"declare the model.* keys that model {name!r} reads in catdog.config.MODEL_READS")

    def wrap(fn: Builder) -> Builder:
        MODELS[name] = fn
        return fn
    return wrap


def build_model(config: Config, num_classes: int, pretrained: bool = True) -> keras.Model:
    """Build the network named by `config.model.name` for images of `config.data.image_size`.

    Args:
        pretrained: load `model.weights` into a transfer backbone; False builds the same
            architecture without them (a summary needs no download).

    Raises:
        ConfigError: the name is not a known model, or the settings do not fit together.
    """
    builder = _builder(config.model.name)
    height, width = config.data.image_size
    # Seeds weight initialisation and the augmentation layers' random streams.
    keras.utils.set_random_seed(config.seed)
    m = config.model if pretrained else dataclasses.replace(config.model, weights="none")
    return builder(m, (height, width, 3), num_classes, bool(config.train.image_sizes))


def _builder(name: str) -> Builder:
    """The builder registered under model.name `name`.

    Raises:
        ConfigError: no model has that name.
    """
    builder = MODELS.get(name)
    if builder is None:
        raise ConfigError(f"model.name must be one of {', '.join(sorted(MODELS))}; got {shown(name, 60)!r}")
    return builder


def check_model(config: Config, fetch: bool = False) -> None:
    """Check the model settings that can be checked without data, before any photo is prepared.

    Builds the network for two classes without pretrained weights (cheap for every model here);
    a transfer model's local weights file is loaded into its backbone, and with `fetch` its
    ImageNet weights are downloaded now (Keras keeps them for the real build), so an unreachable
    server is found before the photos are prepared.

    Raises:
        ConfigError: an unknown name or activation, settings that do not fit, weights missing.
    """
    m = config.model
    _builder(m.name)
    try:
        keras.activations.get(m.activation)
    except (ValueError, TypeError):
        raise ConfigError(f"model.activation must be a Keras activation such as relu, gelu, swish; "
                          f"got {shown(m.activation, 60)!r}") from None
    if m.name == "transfer":
        weights = m.weights if fetch or m.weights.lower() != "imagenet" else "none"
        backbone(m.backbone, weights, (*config.data.image_size, 3))
    else:
        try:
            build_model(config, 2, pretrained=False)
        except ValueError as exc:  # a layer's own argument checks: a kernel larger than the image, ...
            raise ConfigError(f"model settings do not fit data.image_size {list(config.data.image_size)}: "
                              f"{shown(first_line(exc), 200)}") from None
    if config.train.image_sizes:
        _check_smallest(config)
    if config.train.distribute == "none":
        # Forget the check's model, so the real one gets the same automatic layer names; a
        # distribution strategy already set up is left alone.
        keras.backend.clear_session()


def _check_smallest(config: Config) -> None:
    """Build the model for the smallest size of train.image_sizes (the flatten top is refused
    earlier, by catdog.plan): what the layers, or a transfer backbone, accept must hold there too.

    Raises:
        ConfigError: the smallest training size is too small for the model.
    """
    from catdog.plan import size_steps, training_size

    smallest = min(side for _, side in size_steps(config))
    size = training_size(config, smallest)
    small = config.replace(data=dataclasses.replace(config.data, image_size=size),
                           train=dataclasses.replace(config.train, image_sizes=[]))
    try:
        if config.model.name == "transfer":
            backbone(config.model.backbone, "none", (*size, 3))
        else:
            build_model(small, 2, pretrained=False)
        return
    except ConfigError as exc:  # keras.applications' own check, e.g. at least 32x32
        detail = str(exc).split(": ", 1)[-1].rsplit(" (data.image_size", 1)[0]
    except ValueError as exc:  # a layer's own check: a kernel or pool larger than what reaches it
        # Keras wraps a layer's error as "Exception encountered when calling X.call()", then the reason.
        lines = [line for line in str(exc).splitlines() if line.strip()]
        wrapped = len(lines) > 1 and lines[0].startswith("Exception encountered")
        detail = re.sub(r"\x1b\[[0-9;]*m", "", lines[1] if wrapped else first_line(exc))  # no terminal colours
    raise ConfigError(f"train.image_sizes: size {smallest} ({size[0]}x{size[1]}) is too small for model "
                      f"{config.model.name}: {shown(detail, 200)}")


def pooling(kind: str, size: int, name: str | None = None, padding: str = "valid") -> layers.Layer | None:
    """A pooling layer by kind: max, average or l2 (None for "none")."""
    if kind == "none":
        return None
    if kind == "max":
        return layers.MaxPooling2D(size, padding=padding, name=name)
    if kind == "average":
        return layers.AveragePooling2D(size, padding=padding, name=name)
    return L2Pooling2D(size, padding=padding, name=name)


def head(m: ModelConfig, x, num_classes: int):
    """The output layer: num_classes-way softmax, or one sigmoid unit for two classes.

    Its dtype stays float32 so a mixed-precision model still gives a stable softmax/sigmoid.
    """
    if m.head == "sigmoid":
        if num_classes != 2:
            raise ConfigError(f"model.head sigmoid needs exactly 2 classes; got {num_classes}")
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="output")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="output")(x)


def top(m: ModelConfig, x, num_classes: int, kind: str | None = None):
    """Conv features to class probabilities: flatten or global average, optional dense, dropout, head."""
    kind = kind or m.top
    x = layers.Flatten(name="flatten")(x) if kind == "flatten" else layers.GlobalAveragePooling2D(name="gap")(x)
    if m.dense_units:
        if m.dropout:
            x = layers.Dropout(m.dropout, name="dense_dropout")(x)
        x = layers.Dense(m.dense_units, activation=m.activation, name="dense")(x)
    if m.dropout:
        x = layers.Dropout(m.dropout, name="dropout")(x)
    return head(m, x, num_classes)


def warps(m: ModelConfig) -> bool:
    """Whether the config's augmentation includes RandomGeometry's warp (rotation, zoom or translation)."""
    return bool(m.rotation or m.zoom or m.translation)


def augmentation(m: ModelConfig) -> list[layers.Layer]:
    """The augmentation layers the config asks for; Keras runs them only while training.

    Rotation, zoom and translation (and the flip, when any of them is on) are one affine warp,
    RandomGeometry: one resampling pass per photo, not one per transform.
    """
    out: list[layers.Layer] = []
    if warps(m):
        out.append(RandomGeometry(m.flip, m.rotation, m.zoom, m.translation, name="geometry"))
    elif m.flip:
        # Left-right only: an upside-down cat is not a photo anyone takes.
        out.append(layers.RandomFlip("horizontal", name="flip"))
    if m.contrast:
        # value_range: augmentation runs on the raw 0-255 pixels, before any scaling.
        out.append(layers.RandomContrast(m.contrast, value_range=(0, 255), name="contrast"))
    return out


def raw_input(m: ModelConfig, shape: tuple[int, int, int], resize: bool = False):
    """The "image" input of raw 0-255 pixels followed by the config's augmentation.

    With `resize`, the TrainingResize layer comes first, so augmentation runs on the small photo.
    """
    inp = keras.Input(shape=shape, name="image")
    x = TrainingResize(name=RESIZE_LAYER)(inp) if resize else inp
    for layer in augmentation(m):
        x = layer(x)
    return inp, x


def inputs(m: ModelConfig, shape: tuple[int, int, int], resize: bool = False):
    """The input, its augmentation, and its scaling of raw 0-255 pixels to [0, 1]."""
    inp, x = raw_input(m, shape, resize)
    return inp, layers.Rescaling(1.0 / 255, name="rescale")(x)


@register("article")
def article(m: ModelConfig, shape: tuple[int, int, int], num_classes: int, resize: bool = False) -> keras.Model:
    """The article's CNN: one convolution, one pooling, flatten, dense output."""
    inp, x = inputs(m, shape, resize)
    x = layers.Conv2D(m.filters, m.kernel_size, strides=m.strides, padding=m.padding,
                      activation=m.activation, name="conv")(x)
    pool = pooling(m.pool, m.pool_size, name="pool")
    if pool is not None:
        x = pool(x)
    return keras.Model(inp, top(m, x, num_classes), name="article")


# The `cnn` stack when model.blocks is empty: the classic three doubling conv+pool blocks.
CNN_BLOCKS = (BlockConfig(filters=32), BlockConfig(filters=64), BlockConfig(filters=128))


@register("cnn")
def cnn(m: ModelConfig, shape: tuple[int, int, int], num_classes: int, resize: bool = False) -> keras.Model:
    """A plain stack of conv blocks (convs, optional batch norm, pooling, dropout), then the top."""
    inp, x = inputs(m, shape, resize)
    for i, b in enumerate(m.blocks or CNN_BLOCKS, start=1):
        for j in range(1, b.convs + 1):
            # Batch norm replaces the conv's bias and sits before the activation.
            x = layers.Conv2D(b.filters, b.kernel_size, strides=b.strides if j == 1 else 1,
                              padding=b.padding, use_bias=not b.batch_norm,
                              activation=None if b.batch_norm else m.activation,
                              name=f"block{i}_conv{j}")(x)
            if b.batch_norm:
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn{j}")(x)
                x = layers.Activation(m.activation, name=f"block{i}_act{j}")(x)
        pool = pooling(b.pool, b.pool_size, name=f"block{i}_pool")
        if pool is not None:
            x = pool(x)
        if b.dropout:
            x = layers.Dropout(b.dropout, name=f"block{i}_dropout")(x)
    return keras.Model(inp, top(m, x, num_classes), name="cnn")


# Stage widths of `resnet` and `xception` when model.blocks is empty: small enough for a CPU.
RESIDUAL_BLOCKS = (BlockConfig(filters=32), BlockConfig(filters=64), BlockConfig(filters=128),
                   BlockConfig(filters=256))


def _conv_bn(x, filters: int, kernel: int, strides: int, name: str, activation: str | None,
             separable: bool = False):
    conv = layers.SeparableConv2D if separable else layers.Conv2D
    x = conv(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_act")(x) if activation else x


def _stem(m: ModelConfig, shape: tuple[int, int, int], width: int, resize: bool = False):
    """Input, augmentation, scaling, then a strided 3x3 conv: halving early keeps CPU cost down.

    With model.stem_pool a 3x3 stride-2 max pool follows, as in ResNet: the blocks then cost
    the same for a photo twice as wide, while the stem still sees its full detail.
    """
    inp, x = inputs(m, shape, resize)
    x = _conv_bn(x, width, 3, 2, "stem", m.activation)
    if m.stem_pool:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    return inp, x


@register("resnet")
def resnet(m: ModelConfig, shape: tuple[int, int, int], num_classes: int, resize: bool = False) -> keras.Model:
    """A small ResNet: per block `convs` residual units of two 3x3 convs, then pooling.

    The first unit of a block takes the block's stride; a 1x1 projection matches the shortcut
    when the shape changes.
    """
    blocks = m.blocks or RESIDUAL_BLOCKS
    inp, x = _stem(m, shape, blocks[0].filters, resize)
    for i, b in enumerate(blocks, start=1):
        for j in range(1, b.convs + 1):
            name = f"block{i}_unit{j}"
            strides = b.strides if j == 1 else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != b.filters:
                shortcut = _conv_bn(x, b.filters, 1, strides, f"{name}_proj", None)
            y = _conv_bn(x, b.filters, b.kernel_size, strides, f"{name}_a", m.activation)
            y = _conv_bn(y, b.filters, b.kernel_size, 1, f"{name}_b", None)
            x = layers.Activation(m.activation, name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))
        pool = pooling(b.pool, b.pool_size, name=f"block{i}_pool", padding="same")
        if pool is not None:
            x = pool(x)
        if b.dropout:
            x = layers.Dropout(b.dropout, name=f"block{i}_dropout")(x)
    return keras.Model(inp, top(m, x, num_classes, kind="global_average"), name="resnet")


@register("xception")
def xception(m: ModelConfig, shape: tuple[int, int, int], num_classes: int, resize: bool = False) -> keras.Model:
    """The small Xception of keras-io's "Image classification from scratch", widths from blocks.

    Each block: `convs` separable convs with batch norm, pooling, and a strided 1x1 conv on the
    residual path; the exit is a separable conv twice as wide as the last block.
    """
    blocks = m.blocks or RESIDUAL_BLOCKS
    inp, x = _stem(m, shape, blocks[0].filters, resize)
    for i, b in enumerate(blocks, start=1):
        residual = x
        for j in range(1, b.convs + 1):
            # Pre-activation, as in keras-io's example: the residual sum stays linear.
            x = layers.Activation(m.activation, name=f"block{i}_act{j}")(x)
            x = _conv_bn(x, b.filters, b.kernel_size, b.strides if j == 1 else 1, f"block{i}_sep{j}",
                         None, separable=True)
        pool = pooling(b.pool, b.pool_size, name=f"block{i}_pool", padding="same")
        down = b.strides * (b.pool_size if pool is not None else 1)
        if pool is not None:
            x = pool(x)
        if down != 1 or residual.shape[-1] != b.filters:
            residual = layers.Conv2D(b.filters, 1, strides=down, padding="same", name=f"block{i}_proj")(residual)
        x = layers.Add(name=f"block{i}_add")([x, residual])
        if b.dropout:
            x = layers.Dropout(b.dropout, name=f"block{i}_dropout")(x)
    x = _conv_bn(x, 2 * blocks[-1].filters, 3, 1, "exit", m.activation, separable=True)
    return keras.Model(inp, top(m, x, num_classes, kind="global_average"), name="xception")


@register("transfer")
def transfer(m: ModelConfig, shape: tuple[int, int, int], num_classes: int, resize: bool = False) -> keras.Model:
    """A keras.applications backbone with its own preprocessing, then a new head.

    The backbone runs in inference mode (training=False) even when unfrozen for fine-tuning, so
    its batch-norm statistics from pre-training survive small batches of new data.
    """

    net, mode = backbone(m.backbone, m.weights, shape)
    if resize:
        # Built for `shape` (which picks the ImageNet weights file), a backbone's convolutions take
        # any size; only its input check insists on `shape`, and a smaller training photo must pass.
        net.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: shape[-1]})
    inp, x = raw_input(m, shape, resize)
    if mode is not None:
        x = ImagenetPreprocessing(mode, name="preprocess")(x)
    x = net(x, training=False)
    return keras.Model(inp, top(m, x, num_classes, kind="global_average"), name="transfer")

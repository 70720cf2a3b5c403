"""What a trained network computes for one photo: feature maps, first-layer filters, HiResCAM.

Numbers only; catdog.plots draws them. Works on the TensorFlow and the JAX backend: the only
backend-specific code is the gradient in `_gradient`, and resizing uses PIL rather than tf.image
so nothing here needs TensorFlow when Keras runs on JAX.

TensorFlow and JAX are imported inside `_gradient`: only the backend in use is loaded.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple

import keras
import numpy as np
from PIL import Image

from catdog.errors import ImageError, InspectionError
from catdog.keras_private import branches_joining, graph_calls, output_layer
from catdog.layers import L2Pooling2D
from catdog.summary import inbound_layers

CONV_TYPES: tuple[type[Any], ...] = (keras.layers.Conv2D, keras.layers.SeparableConv2D,
                                keras.layers.DepthwiseConv2D)
POOL_TYPES: tuple[type[Any], ...] = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, L2Pooling2D)


@dataclass(frozen=True)
class LayerMaps:
    """The activations of one convolution or pooling layer for one image."""

    name: str
    kind: str  # "conv" or "pool"
    layer_type: str  # the Keras class name, e.g. "Conv2D"
    detail: str  # window and filters, e.g. "5x5 x10" or "2x2"
    shape: tuple[int, int, int]  # (height, width, channels)
    maps: np.ndarray  # float32 (height, width, channels)
    # The layer's own activation ("relu"; "linear" when it has none, as a convolution before batch
    # norm) and what the network does next to these maps (e.g. "batch norm", "the relu activation").
    activation: str = ""
    after: tuple[str, ...] = ()


class ClassMap(NamedTuple):
    """Where the evidence for a class lies; unpacks as (heatmap, class_index, probabilities)."""

    heatmap: np.ndarray  # float32 (height, width) of the image, in [0, 1]
    class_index: int
    probabilities: np.ndarray  # one probability per class


# The name of 0.1.0, when the map came from Grad-CAM.
GradCam = ClassMap

# What `hires_cam` computes, as captions and the serve API name it.
HEATMAP_METHOD = "HiResCAM"


def _kind(layer: keras.layers.Layer) -> str | None:
    if isinstance(layer, CONV_TYPES):
        return "conv"
    if isinstance(layer, POOL_TYPES):
        return "pool"
    return None


def _detail(layer: keras.layers.Layer) -> str:
    """The window (and filter count for convolutions) as the article writes it: 5x5 x10."""
    size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    size = (size, size) if isinstance(size, int) else size
    text = "x".join(str(s) for s in size) if size else ""
    filters = getattr(layer, "filters", None)
    if filters:
        text += f" x{filters}"
    strides = getattr(layer, "strides", None) or ()
    strides = (strides, strides) if isinstance(strides, int) else tuple(strides)
    if strides and size and tuple(strides) != tuple(size) and any(s != 1 for s in strides):
        text += f" stride {strides[0]}"
    return text


def _is_nested(layer: keras.layers.Layer) -> bool:
    # A sub-model (e.g. a keras.applications backbone) whose inner tensors we can reach.
    return isinstance(layer, keras.Model) and bool(getattr(layer, "inputs", None))


def _consumers(model: keras.Model) -> dict[str, list[str]]:
    """Layer name -> the layers of `model` that take its output."""
    consumers: dict[str, list[str]] = {}
    for layer_name, sources in inbound_layers(model).items():
        for source in sources:
            consumers.setdefault(source, []).append(layer_name)
    return consumers


def _next_steps(model: keras.Model, name: str, consumers: dict[str, list[str]]) -> tuple[str, ...]:
    """What follows layer `name` in `model` up to its activation: ("batch norm", "the relu
    activation"), ("batch norm", "the sum with the shortcut"), or () where the graph branches."""
    steps: list[str] = []
    while len(consumers.get(name, [])) == 1:
        name = consumers[name][0]
        layer = model.get_layer(name)
        if isinstance(layer, keras.layers.BatchNormalization):
            steps.append("batch norm")
            continue
        if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU)):
            steps.append(f"the {_activation(layer) or 'relu'} activation")
        elif isinstance(layer, keras.layers.Add):
            steps.append("the sum with the shortcut")
        break
    return tuple(steps)


def _activation(layer: keras.layers.Layer) -> str:
    """The name of a layer's own activation function ("linear" for none), "" if it has no such setting."""
    function = getattr(layer, "activation", None)
    return getattr(function, "__name__", "") if function is not None else ""


def _inputs(model: keras.Model) -> Any:
    # A bare tensor for a one-input model: Keras warns when a list meets a single named input.
    return model.inputs[0] if len(model.inputs) == 1 else list(model.inputs)


def model_input(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """A batch of one float32 image at the model's input size (resized with PIL if needed).

    Raises:
        ImageError: `image` is not an (height, width, 3) array.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImageError(f"expected an RGB image of shape (height, width, 3); got shape {image.shape}")
    height, width = tuple(model.inputs[0].shape)[1:3]
    if height and width and image.shape[:2] != (height, width):
        pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        image = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return image.astype(np.float32)[None]


def _maps_in(model: keras.Model, batch: np.ndarray) -> list[LayerMaps]:
    """Conv and pooling activations of `model` (and of the sub-models inside it) for `batch`.

    One forward pass over the model's own layers; each nested sub-model gets one more pass, fed
    the value that reaches it.
    """
    wanted: list[tuple[str, keras.layers.Layer, Any]] = []
    calls = graph_calls(model)
    for layer in model.layers:
        tensors = calls.get(id(layer))
        if tensors is None:
            continue
        if _kind(layer):
            wanted.append(("layer", layer, tensors[1]))
        elif _is_nested(layer) and any(_kind(inner) or _is_nested(inner) for inner in layer.layers):
            wanted.append(("nested", layer, tensors[0]))
    if not wanted:
        return []
    probe = keras.Model(_inputs(model), [t for _, _, t in wanted])
    values = probe(batch, training=False)
    if not isinstance(values, (list, tuple)):
        values = [values]
    result: list[LayerMaps] = []
    consumers = _consumers(model)
    for (what, layer, _), value in zip(wanted, values, strict=True):
        array = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float32)
        if what == "nested":
            result.extend(_maps_in(layer, array))
        elif array.ndim == 4:
            maps = array[0]
            own = _activation(layer)
            result.append(LayerMaps(layer.name, _kind(layer) or "", type(layer).__name__,
                                    _detail(layer), tuple(maps.shape), maps, own,
                                    _next_steps(model, layer.name, consumers) if own == "linear" else ()))
    return result


def feature_maps(model: keras.Model, image: np.ndarray) -> list[LayerMaps]:
    """The activation maps of every convolution and pooling layer, in order, for one image.

    Args:
        model: a catdog model (raw 0-255 pixels in); layers nested in a sub-model, such as a
            transfer-learning backbone, are included.
        image: an RGB uint8 array; resized to the model's input size if it differs.
    """
    return _maps_in(model, model_input(model, image))


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    flat: list[keras.layers.Layer] = []
    for layer in model.layers:
        flat.extend(_all_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return flat


def first_conv_filters(model: keras.Model) -> np.ndarray:
    """The first convolution layer's weights as a (k, k, in_channels, n_filters) array.

    For a depthwise layer the last axis is the depth multiplier.

    Raises:
        InspectionError: the model has no convolution layer.
    """
    for layer in _all_layers(model):
        if isinstance(layer, CONV_TYPES):
            kernel = getattr(layer, "depthwise_kernel", None)
            if kernel is None:
                kernel = layer.kernel
            return np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float32)
    raise InspectionError(f"model {model.name!r} has no convolution layer, so it has no filters to show")


def _feature_map(model: keras.Model) -> Any:
    """The last spatial feature map of `model`'s own graph: the tensor its head (flatten or global
    pooling, then dense layers) reads. The map is taken there, and not at the last convolution,
    because a pooling layer between the two passes the gradient to one position of each window
    only, and a shortcut joining after the convolution carries evidence the convolution's map
    would leave out."""
    if not any(isinstance(layer, CONV_TYPES) for layer in _all_layers(model)):
        raise InspectionError(f"model {model.name!r} has no convolution layer for HiResCAM")
    calls = graph_calls(model)
    for layer in reversed(model.layers):
        tensors = calls.get(id(layer))
        if tensors is not None and len(tensors[1].shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            return tensors[1]
    raise InspectionError(f"model {model.name!r} has no spatial feature map before its head for HiResCAM")


def _head(model: keras.Model, features: Any) -> tuple[keras.Model, list[Any], str | None]:
    """A model from the feature map (and any shortcut around it) to the class scores.

    Returns the model, the shortcut tensors it also takes after the feature map, and the output
    activation ("softmax"/"sigmoid") when the head returns the pre-activation: the map follows
    the class score before softmax, whose gradient does not vanish when the network is very sure.
    """
    last = output_layer(model)
    activation = getattr(getattr(last, "activation", None), "__name__", None)
    target = model.outputs[0]
    if isinstance(last, keras.layers.Dense) and activation in ("softmax", "sigmoid"):
        tensors = graph_calls(model).get(id(last))
        target = tensors[0] if tensors is not None else target
        activation = activation if tensors is not None else None
    else:
        activation = None
    joining = branches_joining(features, target)
    return keras.Model([features, *joining] if joining else features, target), joining, activation


def _gradient(score_fn, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d score / d features, probabilities) on whichever backend Keras runs on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(x)
            score, probabilities = score_fn(x)
        return tape.gradient(score, x).numpy(), probabilities.numpy()
    if backend == "jax":
        import jax

        grads, probabilities = jax.grad(score_fn, has_aux=True)(jax.numpy.asarray(features))
        return np.asarray(grads), np.asarray(probabilities)
    raise InspectionError(f"HiResCAM runs on the tensorflow and jax backends; Keras is on {backend!r}")


# The two halves of each model, built once: building the head from an intermediate tensor
# re-calls the layers after it, which adds a node to each of them every time.
_PARTS: weakref.WeakKeyDictionary[keras.Model, tuple[keras.Model, keras.Model, str | None]] = (
    weakref.WeakKeyDictionary())


def hires_cam(model: keras.Model, image: np.ndarray, class_index: int | None = None) -> ClassMap:
    """HiResCAM (Draelos & Carin, 2020): where in the image the evidence for a class lies.

    The map is ReLU(sum over channels of dScore/dA * A) at the feature map A that the head reads,
    position by position. For a head that flattens A into dense layers this is each position's
    exact share of the class score; for a global-average-pooled head it equals Grad-CAM, which
    first averages each channel's gradient over the map and so, on a flatten head, lights what a
    channel responds to anywhere instead of where the head counts it.

    The score is the class's logit minus the mean of the logits: the part softmax reads (adding
    one number to every logit changes no probability), so evidence both classes share is not
    shown as evidence for either. A one-unit sigmoid head's logit speaks for class 1 and, negated,
    for class 0.

    Args:
        model: a catdog model with a softmax head or a one-unit sigmoid head (class 1 is p,
            class 0 is 1 - p).
        image: an RGB uint8 array; the heat map comes back at its height and width.
        class_index: the class to explain; the predicted class when None.

    Raises:
        InspectionError: no convolution layer, or `class_index` is not a class of the model.
    """
    ops = keras.ops
    units = int(model.outputs[0].shape[-1])
    n_classes = 2 if units == 1 else units
    if class_index is not None and not 0 <= class_index < n_classes:
        raise InspectionError(f"class_index must be in [0, {n_classes - 1}]; got {class_index}")
    batch = model_input(model, image)
    parts = _PARTS.get(model)
    if parts is None:
        features_tensor = _feature_map(model)
        head, joining, activation = _head(model, features_tensor)
        parts = _PARTS[model] = (keras.Model(_inputs(model), [features_tensor, *joining]), head, activation)
    front, head, activation = parts
    values = front(batch, training=False)
    features, *rest = [np.asarray(ops.convert_to_numpy(v), dtype=np.float32)
                       for v in (values if isinstance(values, (list, tuple)) else [values])]
    # Keras refuses a list that mixes numpy arrays and backend tensors.
    shortcuts = [ops.convert_to_tensor(v) for v in rest]
    final = output_layer(model)
    state: dict[str, int] = {}

    def score_fn(x):
        # The shortcuts do not depend on the feature map: constants for the gradient.
        out = head([x, *shortcuts] if shortcuts else x, training=False)
        out = ops.cast(out, "float32")
        if activation is not None:  # the Dense output layer without its activation: logits
            out = ops.matmul(out, ops.cast(final.kernel, "float32"))
            if final.bias is not None:
                out = out + ops.cast(final.bias, "float32")
        if out.shape[-1] == 1:  # one sigmoid unit: class 1 is p, class 0 is 1 - p
            p = ops.sigmoid(out[0, 0]) if activation else out[0, 0]
            probs = ops.stack([1.0 - p, p])
            logit = out[0, 0] if activation else ops.log(p + 1e-7) - ops.log(1.0 - p + 1e-7)
            scores = ops.stack([-logit, logit])
        else:
            probs = ops.softmax(out[0]) if activation else out[0]
            logits = out[0] if activation else ops.log(probs + 1e-7)
            scores = logits - ops.mean(logits)
        if "index" not in state:  # the first, untraced call picks the class
            state["index"] = (int(np.argmax(ops.convert_to_numpy(probs)))
                              if class_index is None else class_index)
        return scores[state["index"]], ops.stop_gradient(probs)

    probabilities = np.asarray(ops.convert_to_numpy(score_fn(ops.convert_to_tensor(features))[1]), np.float32)
    grads, _ = _gradient(score_fn, features)
    # Each position's own gradient times its activation, summed over channels; ReLU keeps what
    # speaks for the class. No averaging of the gradient over the map (that would be Grad-CAM).
    cam = np.maximum((grads[0] * features[0]).sum(axis=-1), 0.0)
    top = float(cam.max()) if cam.size else 0.0
    cam = cam / top if np.isfinite(top) and top > 0 else np.zeros_like(cam)
    height, width = np.asarray(image).shape[:2]
    resized = Image.fromarray(cam.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR)
    heatmap = np.nan_to_num(np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0))
    return ClassMap(heatmap, int(state["index"]), probabilities)


def grad_cam(model: keras.Model, image: np.ndarray, class_index: int | None = None) -> ClassMap:
    """Deprecated: `hires_cam`, which this name has answered since Grad-CAM was replaced."""
    warnings.warn("catdog.inspection.grad_cam is now hires_cam (HiResCAM); the old name goes in a later release",
                  DeprecationWarning, stacklevel=2)
    return hires_cam(model, image, class_index)

"""keras.applications backbones for the `transfer` model: names, preprocessing and weights."""

from __future__ import annotations

from pathlib import Path

import keras

from catdog.errors import ConfigError, first_line

# keras.applications backbones by lower-case name: (constructor, preprocessing of 0-255 pixels).
# None: the backbone scales its own input (EfficientNet, ConvNeXt). "tf": [-1, 1].
# "caffe": RGB to BGR minus the ImageNet mean. "torch": [0, 1] minus mean, over std.
BACKBONES: dict[str, tuple[str, str | None]] = {
    "efficientnetb0": ("EfficientNetB0", None),
    "efficientnetb1": ("EfficientNetB1", None),
    "efficientnetb2": ("EfficientNetB2", None),
    "efficientnetv2b0": ("EfficientNetV2B0", None),
    "efficientnetv2s": ("EfficientNetV2S", None),
    "convnexttiny": ("ConvNeXtTiny", None),
    "mobilenet": ("MobileNet", "tf"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "mobilenetv3small": ("MobileNetV3Small", None),
    "mobilenetv3large": ("MobileNetV3Large", None),
    "resnet50": ("ResNet50", "caffe"),
    "resnet101": ("ResNet101", "caffe"),
    "resnet50v2": ("ResNet50V2", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    "xception": ("Xception", "tf"),
    "inceptionv3": ("InceptionV3", "tf"),
    "vgg16": ("VGG16", "caffe"),
}


def backbone_key(name: str | None) -> str:
    """The BACKBONES key for a user's spelling ("EfficientNetB0", "mobilenet_v2", ...)."""
    key = (name or "").lower().replace("_", "").replace("-", "")
    if key not in BACKBONES:
        raise ConfigError(f"model.backbone must be one of {', '.join(c for c, _ in BACKBONES.values())}; "
                          f"got {name!r}")
    return key


def backbone(name: str | None, weights: str, shape: tuple[int, int, int]) -> tuple[keras.Model, str | None]:
    """The headless keras.applications network `name` with `weights`, and its preprocessing mode.

    Raises:
        ConfigError: unknown backbone, ImageNet weights that cannot be downloaded, or a weights
            file that is missing or does not fit.
    """
    ctor_name, mode = BACKBONES[backbone_key(name)]
    ctor = getattr(keras.applications, ctor_name)
    # A stable name lets the trainer find the backbone to freeze and unfreeze it.
    kwargs = {"include_top": False, "input_shape": shape, "name": "backbone"}
    imagenet = weights.lower() == "imagenet"
    try:
        net = ctor(weights="imagenet" if imagenet else None, **kwargs)
    except ValueError as exc:  # keras.applications' argument checks, e.g. an image too small
        raise ConfigError(f"model.backbone {name}: {first_line(exc)} (data.image_size {list(shape[:2])})") from None
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when a fetch fails
        if not imagenet:
            raise
        raise ConfigError(f"model.weights imagenet: cannot download the {ctor_name} ImageNet weights "
                          f"({first_line(exc)}); without network, fetch the file elsewhere and set "
                          f"model.weights: /path/to/file.h5") from None
    if not imagenet and weights.lower() != "none":
        if not Path(weights).is_file():
            raise ConfigError(f"model.weights must be imagenet, none or a weights file; "
                              f"got {weights!r} (file not found)")
        try:
            net.load_weights(weights)
        except Exception as exc:  # h5py and Keras raise assorted types for a file that does not fit
            raise ConfigError(f"model.weights {weights!r} does not fit {ctor_name} ({first_line(exc)})") from None
    return net, mode

"""Typed, frozen configuration loaded strictly from YAML plus `--set` overrides.

Every default lives once, on its dataclass field. Loading rejects unknown keys (with the closest
known key as a hint), wrong types and out-of-range values, naming the key, the value received and
the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import re
import reprlib
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import yaml

from catdog.errors import ConfigError, shown

# Hard ceilings on sizes and counts: far above any sensible setting, low enough that a typo
# (image_size 100000) is refused up front instead of asking for gigabytes per photo.
MAX_IMAGE_SIDE = 2048
MAX_COUNT = 1_000_000  # epochs, batch sizes, units, filters: a number no run needs more of
MAX_WORKERS = 1024  # data.workers is further capped by the CPU cores and the work (cache.py)
# Seeds go to NumPy, Python and the backend's generators; 32 bits fit them all.
MAX_SEED = 2**32 - 1
# What a config file may expand to after YAML anchors and aliases are resolved: a real config
# has a few hundred values; an alias "bomb" of a few hundred bytes would expand to billions.
MAX_CONFIG_NODES = 10_000

# How a photo becomes data.image_size; catdog.images checks its `resize` argument against these.
ResizeMode = Literal["squash", "crop", "pad"]

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11 on


def _opt(default: Any = None, *, min: float | None = None, max: float | None = None,
         min_exclusive: bool = False, max_exclusive: bool = False, **kw: Any) -> Any:
    """A dataclass field with a range check carried in its metadata."""
    meta = {"min": min, "max": max, "min_exclusive": min_exclusive, "max_exclusive": max_exclusive}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: typing.cast(Any, type(default))(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass(frozen=True)
class DataConfig:
    # Folder of class sub-folders (or Kaggle's flat cat.1.jpg naming); `--data` overrides it.
    dir: Optional[str] = None
    # A separate validation folder; when set, validation_split is not used.
    validation_dir: Optional[str] = None
    # The article resizes every photo to 300x300; an int means a square.
    image_size: tuple[int, int] = (300, 300)
    # How a photo becomes image_size: plain resize (the article's), center crop, or letterbox.
    resize: ResizeMode = "squash"
    # The article holds out 30% of the photos for validation.
    validation_split: float = _opt(0.3, min=0.0, max=0.9)
    # Photos held out from training and validation alike, scored by `catdog evaluate`.
    test_split: float = _opt(0.0, min=0.0, max=0.9)
    # Where prepared (decoded, resized) images are cached; default: ~/.cache/catdog.
    cache_dir: Optional[str] = None
    # Decode processes for `prepare`; 0 means one per CPU core.
    workers: int = _opt(0, min=0, max=MAX_WORKERS)
    # A decisions file (CSV or YAML; see catdog.decisions) excluding or relabelling photos of the data
    # folders; none by default, so every photo counts with its folder's label.
    decisions: Optional[str] = None


@dataclass(frozen=True)
class BlockConfig:
    """One convolution block of the `cnn` model: convs, optional batch norm, pooling, dropout."""

    filters: int = _opt(32, min=1, max=MAX_COUNT)
    kernel_size: int = _opt(3, min=1, max=MAX_COUNT)
    strides: int = _opt(1, min=1, max=MAX_COUNT)
    padding: Literal["valid", "same"] = "same"
    convs: int = _opt(1, min=1, max=MAX_COUNT)
    batch_norm: bool = False
    pool: Literal["max", "average", "l2", "none"] = "max"
    pool_size: int = _opt(2, min=1, max=MAX_COUNT)
    dropout: float = _opt(0.0, min=0.0, max=0.95)


@dataclass(frozen=True)
class ModelConfig:
    # Which builder in catdog.models.MODELS makes the network.
    name: str = "article"
    # The article's single convolution: 10 filters of 5x5, stride 1, no padding, ReLU.
    filters: int = _opt(10, min=1, max=MAX_COUNT)
    kernel_size: int = _opt(5, min=1, max=MAX_COUNT)
    strides: int = _opt(1, min=1, max=MAX_COUNT)
    padding: Literal["valid", "same"] = "valid"
    activation: str = "relu"
    # The article's 2x2 max pooling; the article also names average and L2-norm pooling.
    pool: Literal["max", "average", "l2", "none"] = "max"
    pool_size: int = _opt(2, min=1, max=MAX_COUNT)
    # A 2-unit softmax (the article's) or a 1-unit sigmoid output.
    head: Literal["softmax", "sigmoid"] = "softmax"
    # The resnet and xception stem is a strided 3x3 conv (halving the input); stem_pool adds a 3x3
    # stride-2 max pool after it (quartering, as ResNet does), so larger photos cost little more.
    stem_pool: bool = False
    # Conv blocks of the `cnn` and residual models; empty means the builder's own default stack.
    blocks: list[BlockConfig] = _opt([], max=64)
    # How conv features reach the head: the article flattens; deeper models average globally.
    top: Literal["flatten", "global_average"] = "flatten"
    # Dense units before the head (0: none) and the dropout in front of the head.
    dense_units: int = _opt(0, min=0, max=MAX_COUNT)
    dropout: float = _opt(0.0, min=0.0, max=0.95)
    # Augmentation layers, active only while training (0 turns each off).
    flip: bool = False
    rotation: float = _opt(0.0, min=0.0, max=1.0)
    zoom: float = _opt(0.0, min=0.0, max=0.9)
    translation: float = _opt(0.0, min=0.0, max=0.9)
    contrast: float = _opt(0.0, min=0.0, max=1.0)
    # Transfer learning: backbone name in keras.applications and where its weights come from
    # ("imagenet", "none" or a local .h5/.weights.h5 path).
    backbone: Optional[str] = None
    weights: str = "none"
    # Epochs with the backbone frozen before fine-tuning the whole network.
    freeze_epochs: int = _opt(0, min=0, max=MAX_COUNT)


# Which model.* keys each model of catdog.models.MODELS reads (model.name aside), and which keys of
# each model.blocks entry. `config resolve` and a run's config.yaml show only these; setting another
# warns (UnreadKeyWarning). The augmentation and the head are every model's.
_EVERY_MODEL = ("activation", "dense_units", "dropout", "head", "flip", "rotation", "zoom", "translation", "contrast")
# The residual models' units always use batch norm and "same" padding.
_RESIDUAL_BLOCK = ("filters", "kernel_size", "strides", "convs", "pool", "pool_size", "dropout")


@dataclass(frozen=True)
class Reads:
    """The model.* keys one model reads, and the keys of each model.blocks entry it reads."""

    keys: tuple[str, ...]
    block_keys: tuple[str, ...] = ()


MODEL_READS: dict[str, Reads] = {
    "article": Reads(("filters", "kernel_size", "strides", "padding", "pool", "pool_size", "top", *_EVERY_MODEL)),
    "cnn": Reads(("blocks", "top", *_EVERY_MODEL), tuple(f.name for f in dataclasses.fields(BlockConfig))),
    "resnet": Reads(("stem_pool", "blocks", *_EVERY_MODEL), _RESIDUAL_BLOCK),
    "xception": Reads(("stem_pool", "blocks", *_EVERY_MODEL), _RESIDUAL_BLOCK),
    # freeze_epochs is read by the trainer (catdog.plan), for this model only.
    "transfer": Reads(("backbone", "weights", "freeze_epochs", *_EVERY_MODEL)),
}


@dataclass(frozen=True)
class SizeStep:
    """One entry of train.image_sizes: from an epoch on, the training photos' side is a size.

    Each entry sets one key of each pair (catdog.plan.size_steps resolves and checks them): when,
    `epoch` or `at`; how large, `size` or `scale`. The fractions make a schedule that scales with
    train.epochs and data.image_size, so `--set train.epochs=...` keeps its shape.
    """

    # Epochs trained before this size starts: 0 for the first entry.
    epoch: Optional[int] = _opt(None, min=0, max=MAX_COUNT)
    # The same as a fraction of train.epochs: the entry starts after floor(at x train.epochs) epochs.
    at: Optional[float] = _opt(None, min=0.0, max=1.0, max_exclusive=True)
    # The side of the training photos (for a non-square data.image_size its longer side; the
    # aspect is kept); at most data.image_size.
    size: Optional[int] = _opt(None, min=8, max=MAX_IMAGE_SIDE)
    # The same as a fraction of data.image_size's longer side (rounded, at least 8 pixels).
    scale: Optional[float] = _opt(None, min=0.0, max=1.0, min_exclusive=True)


class UnreadKeyWarning(UserWarning):
    """A config sets a model.* key that the chosen model does not read (see MODEL_READS)."""


@dataclass(frozen=True)
class TrainConfig:
    # The article trains 5 epochs with batches of 128 under Adam.
    epochs: int = _opt(5, min=1, max=MAX_COUNT)
    # GLOBAL batch size: with train.distribute each step splits it over all replicas, so the
    # same config trains the same way on one device or eight (the learning rate is not rescaled).
    batch_size: int = _opt(128, min=1, max=MAX_COUNT)
    # Largest batch computed at once. A larger batch_size is computed in micro-batches of this
    # size whose gradients are averaged into one update: the same step as the whole batch (batch
    # norm aside, which sees each micro-batch), with a fraction of the activation memory; on a CPU
    # it is faster too (docs/speed.md). null: 32 on a CPU, the whole batch on a GPU or when
    # distributed.
    micro_batch: Optional[int] = _opt(None, min=1, max=MAX_COUNT)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = _opt(0.001, min=0.0, max=10.0, min_exclusive=True)
    schedule: Literal["constant", "cosine", "plateau"] = "constant"
    warmup_epochs: int = _opt(0, min=0, max=MAX_COUNT)
    label_smoothing: float = _opt(0.0, min=0.0, max=0.5)
    # The probability that a training batch is cut-mixed: a box of another photo pasted into
    # each photo, its target mixed by area (CutMix). 0 is off.
    cutmix: float = _opt(0.0, min=0.0, max=1.0)
    weight_decay: float = _opt(0.0, min=0.0, max=1.0)
    # Momentum of an exponential moving average of the weights (Keras's optimizer use_ema), per
    # update of batch_size photos whatever the micro-batches; 0 is off. The model kept, its
    # checkpoints and the validation numbers are the average over the last ~1/(1-ema) updates
    # (0.99: 100), smoother than the last step's weights, which jump with each batch. Batch-norm
    # moving statistics are not averaged (Keras averages trainable weights only): they keep
    # following the trained weights, which the averaged ones lag by about that many updates.
    # Each fit call ends on the average (Keras), so where a run has phases (model.freeze_epochs,
    # train.image_sizes) training goes on from the averaged weights after each boundary.
    ema: float = _opt(0.0, min=0.0, max=1.0, max_exclusive=True)
    # Stop after this many epochs without improvement of `monitor`; 0 never stops early.
    early_stopping: int = _opt(0, min=0, max=MAX_COUNT)
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    # Keep the weights of the best epoch by `monitor` rather than the last.
    keep_best: bool = True
    # TensorBoard logs in the run folder (tensorboard/): each epoch's numbers and the learning rate,
    # the learning curves as training ends and each evaluation's pictures (tensorboard/evaluation).
    # They need the tensorboard package (catdog[tensorboard]). null: written when it is installed,
    # nothing said when it is not (a plain install stays quiet); true: training says once when it
    # is missing; false: never.
    tensorboard: Optional[bool] = None
    # Weigh each class's photos in the loss, for uneven folders: null (off), "balanced" (class c
    # weighs n / (classes x n_c) over the training photos, as in scikit-learn and Keras's
    # imbalanced-data example) or {class name: weight} (unlisted classes weigh 1). Keras's own
    # model.fit(class_weight=...) applies it.
    class_weight: Union[Literal["balanced"], dict[str, float], None] = _opt(None, min=0.0, min_exclusive=True)
    # "auto": mixed_bfloat16 on GPUs of compute capability >= 8, mixed_float16 on 7.x, float32 on
    # older GPUs; on a CPU, mixed_bfloat16 where it has AMX or AVX512-BF16 instructions and float32
    # elsewhere (emulated bfloat16 is about five times slower). Outputs stay float32.
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    # XLA. "auto" is Keras's choice: on for JAX and for TensorFlow on a GPU, off on TensorFlow's CPU,
    # and off wherever a layer cannot compile (TensorFlow's XLA has no kernel for RandomGeometry).
    jit_compile: Literal["auto", "on", "off"] = "auto"
    # none: one device; mirrored: every local GPU; multi_worker: several machines (TF_CONFIG).
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    # Progressive resizing: [{epoch: 0, size: 112}, {epoch: 40, size: 160}] trains the first 40 epochs
    # on photos shrunk to 112x112 inside the model, then at 160x160; each entry holds from its epoch
    # (epochs trained before it) until the next. In fractions (SizeStep), [{at: 0, scale: 0.7},
    # {at: 0.8, scale: 1}] is the same for 50 epochs at 160x160 and keeps its shape for any other.
    # A conv net's cost grows with the pixels, so the early epochs, which learn coarse features,
    # cost about half. Validation, evaluate, predict and export always see data.image_size, so a
    # schedule normally ends there. Empty: off (the model has no resize layer at all). Needs a model
    # that takes any size (no flatten top).
    image_sizes: list[SizeStep] = _opt([], max=64)


# Keys a search may not vary: they decide which photos train and which score the trials (tune holds
# its own photos out, the same for every trial), or where files go, or how the devices are used.
UNSEARCHABLE = ("name", "seed", "data.dir", "data.validation_dir", "data.validation_split", "data.test_split",
                "data.cache_dir", "data.workers", "train.distribute")


@dataclass(frozen=True)
class TuneConfig:
    """What `catdog tune` searches and how; `catdog train` ignores this section."""

    # {dotted config key: [choices] or {low, high, log, step}}; checked by `search_space`.
    space: dict[str, Any] = _opt({})
    # The fraction of the training photos tune holds out, stratified and seeded by `seed` (the same
    # photos for every trial), to score trials on: 400 of 2,000 photos tell 2 points of accuracy apart.
    holdout: float = _opt(0.2, min=0.0, max=0.5, min_exclusive=True)
    # Median: a trial whose epoch falls below the median of earlier trials at that epoch stops;
    # hyperband: brackets of trials cut at growing epochs; none: every trial runs to its end.
    pruner: Literal["median", "hyperband", "none"] = "median"


@dataclass(frozen=True)
class Config:
    # What the config is called: a new run folder is runs/<time>-<name>. Default: the built-in
    # config's name or the file's stem (a run's config.yaml records it). Two configs that differ
    # only in name train the same model, so it takes no part in ==.
    name: Optional[str] = field(default=None, compare=False)
    # One seed drives the split, weight initialisation and shuffling.
    seed: int = _opt(42, min=0, max=MAX_SEED)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Read by `catdog tune` only. A search space trains nothing, so it takes no part in ==.
    tune: TuneConfig = field(default_factory=TuneConfig, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready data (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


def _data(value: Any) -> Any:
    """A checked value as plain YAML-ready data (a model.blocks entry becomes a mapping)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def builtin_configs() -> dict[str, Traversable]:
    """The configs shipped inside the package, by name (`article`, `large`, ...)."""
    folder = importlib.resources.files("catdog.configs")
    return {f.name.removesuffix(".yaml"): f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def describe(text: str) -> str:
    """What a config is for: its leading comment, up to the first colon or full stop."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    words = " ".join(lines)
    for stop in (": ", ". "):
        words = words.split(stop)[0]
    return words.rstrip(".")


def config_source(name_or_path: str | Path) -> tuple[bytes, str]:
    """The bytes of a config file, or of a built-in config named without a folder, and its label.

    A file that exists wins over a built-in config of the same name.

    Raises:
        ConfigError: a folder, or neither a file nor a built-in name (with the closest name, if any).
    """
    p = Path(name_or_path)
    if p.is_file():
        return p.read_bytes(), str(p)
    builtin = builtin_configs()
    name = str(name_or_path).removesuffix(".yaml")
    bare = p.name == str(name_or_path)  # no folder part: it may be a built-in name
    if name in builtin and bare:
        return builtin[name].read_bytes(), f"built-in config {name}"
    expected = f"expected a YAML file or a built-in config name: {', '.join(builtin)}"
    if p.is_dir():
        # A run folder holds the config it was trained with.
        inside = p / "config.yaml"
        hint = f"did you mean {shown(inside)}?" if inside.is_file() else expected
        raise ConfigError(f"config {shown(p)} is a folder, not a YAML file; {hint}")
    close = difflib.get_close_matches(name, list(builtin), n=1, cutoff=0.6) if bare else []
    close = close or difflib.get_close_matches(p.name, _yaml_files(p.parent), n=1, cutoff=0.8)
    if close:
        if close[0] in builtin:
            raise ConfigError(f"no config file or built-in config named {shown(p)}; did you mean {close[0]}?")
        raise ConfigError(f"config file not found: {shown(p)}; did you mean {shown(p.parent / close[0])}?")
    raise ConfigError(f"config file not found: {shown(p)} ({expected})")


def _yaml_files(folder: Path) -> list[str]:
    """The names of the YAML files in a folder (none if it cannot be listed)."""
    try:
        return sorted(f.name for f in folder.iterdir() if f.suffix in (".yaml", ".yml"))
    except OSError:
        return []


def config_name(path: str | Path, source: str) -> str:
    """The name a config loaded from `path` goes by when it sets none: a built-in config's name, a
    file's stem, or for a file named config.yaml (a run's) its folder's name without the time."""
    if source.startswith("built-in config "):
        return source.removeprefix("built-in config ")
    p = Path(path).resolve()
    if p.stem == "config" and p.parent.name:
        return re.sub(r"^\d{8}-\d{6}-", "", p.parent.name)
    return p.stem


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a config file or built-in config (the defaults when `path` is None) and apply `KEY=VALUE` overrides.

    Errors in the file name the file; errors in an override name `--set`. A model.* key that the
    model does not read (MODEL_READS) is ignored with an UnreadKeyWarning naming the model and key.

    Raises:
        ConfigError: the file is missing or not YAML, or a key, type or value is wrong.
    """
    source = "defaults"
    raw: dict[str, Any] = {}
    if path is not None:
        data, source = config_source(path)
        loaded = parse_yaml(data, source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of sections (data, model, train); "
                              f"got {type(loaded).__name__}")
        raw = loaded
    config = config_from_dict(raw, source)
    overridden: dict[str, Any] = {}
    if overrides:
        # The file is valid on its own, so whatever fails now came from an override.
        for item in overrides:
            _apply_override(raw, item)
            _apply_override(overridden, item)
        _check_size(raw, "--set")
        config = config_from_dict(raw, "--set")
    from_set = unread_keys(overridden, config.model.name)
    _warn_unread([k for k in unread_keys(raw, config.model.name) if k not in from_set], config.model.name, source)
    _warn_unread(from_set, config.model.name, "--set")
    if config.name is None and path is not None:
        config = config.replace(name=config_name(path, source))
    return config


def unread_keys(raw: dict[str, Any], model: str) -> list[str]:
    """The model.* keys set in plain config data that model `model` does not read (see MODEL_READS)."""
    reads = MODEL_READS.get(model)
    section = raw.get("model")
    if reads is None or not isinstance(section, dict):
        return []  # an unknown model name is catdog.models' to report
    keys = [f"model.{k}" for k in section if k != "name" and k not in reads.keys]
    blocks = section.get("blocks")
    if "blocks" in reads.keys and isinstance(blocks, list):
        for i, block in enumerate(blocks):
            if isinstance(block, dict):
                keys += [f"model.blocks[{i}].{k}" for k in block if k not in reads.block_keys]
    return keys


def _warn_unread(keys: list[str], model: str, source: str) -> None:
    if not keys:
        return
    reads = MODEL_READS[model]
    listed = ", ".join(f.name for f in dataclasses.fields(ModelConfig) if f.name in reads.keys)
    if reads.block_keys:
        listed += f"; in each of model.blocks: {', '.join(reads.block_keys)}"
    verb = "is" if len(keys) == 1 else "are"
    warnings.warn(f"{shown(', '.join(keys), 300)} {verb} not read by the {model} model (it reads: {listed}); "
                  f"ignored ({source})", UnreadKeyWarning, stacklevel=3)


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping (YAML says keys are unique;
    PyYAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _value in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    dup = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the mapping check below names it
                    continue
                if dup:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key, 60)}", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's content, read strictly (see parse_yaml).

    Raises:
        ConfigError: see parse_yaml. OSError: it cannot be read.
    """
    return parse_yaml(path.read_bytes(), str(path))


def config_text(data: bytes, source: str) -> str:
    """The bytes of a config file as text.

    Raises:
        ConfigError: they are not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          f"save it as UTF-8") from None


def parse_yaml(data: bytes, source: str) -> Any:
    """YAML read strictly: UTF-8, no duplicate keys, bounded expansion.

    Raises:
        ConfigError: not UTF-8 or not YAML, a key repeats, or it expands to more than
            MAX_CONFIG_NODES values.
    """
    text = config_text(data, source)
    try:
        loaded = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        raise ConfigError(f"{source}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    _check_size(loaded, source)
    return loaded


def _check_size(value: Any, source: str) -> None:
    """Refuse data that expands to more than MAX_CONFIG_NODES values (anchors and aliases share
    objects, so a few hundred bytes can stand for billions); stops counting at the limit."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(f"{source}: expands to more than {MAX_CONFIG_NODES:,} values (YAML aliases "
                              f"nested in aliases?); a config needs a few hundred")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 3, 60, 60


def _value(value: Any) -> str:
    """A received value for an error message: its repr, bounded however large the value is."""
    return shown(_repr.repr(value), 120)


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Build a Config from plain data, checking every key, type and range (tune.space's too)."""
    config = _build(Config, raw, "", source)
    search_space(config.tune.space, source)
    return config


@dataclass(frozen=True)
class Dimension:
    """One searched key: `choices` (categorical), or a range from `low` to `high`."""

    key: str
    choices: Optional[list[Any]] = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: Optional[float] = None
    integer: bool = False


def _key_field(key: str) -> tuple[Any, Any] | None:
    """(type hint, range metadata) of a dotted config key, or None if there is no such key."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if part not in fields:
            return None
        hint = typing.get_type_hints(cls)[part]
        if i == len(parts) - 1:
            return hint, fields[part].metadata
        cls = hint
    return None


def search_space(space: dict[str, Any], source: str = "config", where: str = "tune.space") -> list[Dimension]:
    """The dimensions of a search space, each key and value checked as the config checks that key.

    A key maps to a list of choices, or to {low, high, log, step} for a number key.

    Raises:
        ConfigError: naming the key: not a config key (with the closest), one a search may not
            vary, an empty list, a range that key would refuse, or low not below high.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"{where or 'a search space'} must be a mapping {{config key: [choices] or {{low, high}}}}; "
                          f"got {_value(space)} ({source})")
    searchable = [k for k in _leaf_keys(Config) if k not in UNSEARCHABLE and not k.startswith("tune.")]
    dims = []
    for key, spec in space.items():
        key = str(key)
        label = f"{where}.{shown(key, 80)}" if where else shown(key, 80)
        if key in UNSEARCHABLE or key.startswith("tune."):
            raise ConfigError(f"{label}: {key} cannot be searched (it decides which photos train and score "
                              f"the trials, or where files go) ({source})")
        found = _key_field(key)
        if found is None or isinstance(found[0], type) and dataclasses.is_dataclass(found[0]):
            close = difflib.get_close_matches(key, searchable, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else "; use a dotted config key such as train.learning_rate"
            raise ConfigError(f"{label}: not a config key ({source}){hint}")
        hint, meta = found
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{label} must list at least one choice; got [] ({source})")
            choices = [_check(hint, v, f"{label}[{i}]", source, meta) for i, v in enumerate(spec)]
            # A list key (model.blocks) keeps each choice as written: its checked form spells out
            # every default of every block.
            plain = spec if typing.get_origin(hint) is list else [_data(c) for c in choices]
            dims.append(Dimension(key, choices=plain))
            continue
        dims.append(_range(key, label, spec, hint, meta, source))
    return dims


def _range(key: str, label: str, spec: Any, hint: Any, meta: Any, source: str) -> Dimension:
    union = typing.get_origin(hint) is typing.Union
    arms = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    number = next((a for a in arms if a in (int, float)), None)
    if not isinstance(spec, dict) or number is None:
        what = "a list of choices or {low, high, log, step}" if number else "a list of choices"
        raise ConfigError(f"{label} must be {what}; got {_value(spec)} ({source})")
    unknown = [k for k in spec if k not in ("low", "high", "log", "step")]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), ["low", "high", "log", "step"], n=1, cutoff=0.6)
        hint_text = f"; did you mean {close[0]}?" if close else "; known: low, high, log, step"
        raise ConfigError(f"unknown key {label}.{shown(str(unknown[0]), 40)} ({source}){hint_text}")
    for bound in ("low", "high"):
        if bound not in spec:
            raise ConfigError(f"{label} needs {bound} (a range is {{low, high, log, step}}) ({source})")
    low = _check(number, spec["low"], f"{label}.low", source, meta)
    high = _check(number, spec["high"], f"{label}.high", source, meta)
    if not low < high:
        raise ConfigError(f"{label}: low must be below high; got low {low}, high {high} ({source})")
    log = _check(bool, spec.get("log", False), f"{label}.log", source, {})
    step = spec.get("step")
    if step is not None:
        step = _check(number, step, f"{label}.step", source, {"min": 0, "max": high - low, "min_exclusive": True})
    if log and low <= 0:
        raise ConfigError(f"{label}: a log scale needs low > 0; got low {low} ({source})")
    if log and step is not None and not (number is int and step == 1):
        raise ConfigError(f"{label}: log and step cannot be combined; drop one ({source})")
    return Dimension(key, low=low, high=high, log=log, step=step, integer=number is int)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, e.g. train.epochs=1; got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping; got {_value(raw)} ({source})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            full = shown(f"{prefix}{key}", 80)
            known = [f"{prefix}{name}" for name in fields]
            # `epochs` or `data.epochs` for `train.epochs`: the right key in another section; else
            # the closest name in this one (compared without the prefix, which every name shares).
            close = [k for k in _leaf_keys(Config) if k.rpartition(".")[2] == key]
            close = close or [f"{prefix}{n}" for n in difflib.get_close_matches(str(key), list(fields), n=1,
                                                                                 cutoff=0.6)]
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"unknown config key {full} ({source}){hint}")
    required = [n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    if required:
        raise ConfigError(f"{prefix.rstrip('.')} needs {required[0]} ({_type_name(hints[required[0]])}); "
                          f"got {_value(raw)} ({source})")
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _check(hints[name], raw[name], f"{prefix}{name}", source, f.metadata)
    return cls(**values)


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, e.g. train.epochs."""
    keys = []
    for name, tp in typing.get_type_hints(cls).items():
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += _leaf_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        return repr(choices[0]) if len(choices) == 1 else "one of " + ", ".join(repr(a) for a in choices)
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if tp == tuple[int, int]:
        return "an int or [height, width]"
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping {name: " + _type_name(typing.get_args(tp)[1]).removeprefix("a ") + "}"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _check(tp: Any, value: Any, key: str, source: str, meta: Any) -> Any:
    lo, hi = meta.get("min"), meta.get("max")
    # The MAX_COUNT ceiling is named only to a value above it; below, the lower bound is the news.
    shown_hi = None if hi == MAX_COUNT and not _above(value, hi) else hi
    if lo is None:
        expected_range = ""
    elif shown_hi is None:
        expected_range = f" > {lo}" if meta.get("min_exclusive") else f" >= {lo}"
    else:
        expected_range = (f" in {'(' if meta.get('min_exclusive') else '['}{lo}, {hi}"
                          f"{')' if meta.get('max_exclusive') else ']'}")

    def fail(expected: str | None = None) -> typing.NoReturn:
        expected = expected or _type_name(tp) + expected_range
        raise ConfigError(f"{key} must be {expected}; got {_value(value)} ({source})")

    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None:
            return None
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        mapping = [a for a in arms if typing.get_origin(a) is dict]
        if mapping and isinstance(value, dict):
            return _check(mapping[0], value, key, source, meta)  # its own error names the entry
        for arm in arms:
            try:
                return _check(arm, value, key, source, meta)
            except ConfigError:
                pass
        fail(_type_name(tp) if mapping else None)  # a mapping's range is its values', said above
    if origin is Literal:
        choices = typing.get_args(tp)
        # YAML 1.1 reads a bare on/off as true/false; take them as the words everyone typed.
        if isinstance(value, bool) and "on" in choices and "off" in choices:
            value = "on" if value else "off"
        if value not in choices:
            fail()
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{key}.", source)
    if origin is list:
        if not isinstance(value, list) or (hi is not None and len(value) > hi):
            fail(f"a list of at most {hi} items" if isinstance(value, list) else None)
        (item_type,) = typing.get_args(tp)
        return [_check(item_type, v, f"{key}[{i}]", source, {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail()
        item_type = typing.get_args(tp)[1]
        return {str(k): _check(item_type, v, f"{key}.{k}", source, meta) for k, v in value.items()}
    if tp == tuple[int, int]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value, value]
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= MAX_IMAGE_SIDE for v in value)):
            fail(f"an int or [height, width] of integers in [8, {MAX_IMAGE_SIDE}]")
        return (int(value[0]), int(value[1]))
    if tp is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
    elif tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number everyone means.
            try:
                value = float(value)
            except ValueError:
                fail()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        value = float(value)
        # NaN passes every range check (comparisons with it are false) and infinity passes a
        # lower bound; either would train a model that answers NaN.
        if not math.isfinite(value):
            fail("a finite number" + expected_range)
    elif tp is str and not isinstance(value, str):
        fail()
    if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
        fail()
    if hi is not None and (value > hi or (meta.get("max_exclusive") and value == hi)):
        fail()
    return value


def config_yaml(config: Config) -> str:
    """The config as YAML, sections in the dataclasses' order, short lists on one line.

    The model section holds only the keys its model reads (MODEL_READS): the others change nothing,
    and loading the YAML back gives them their defaults, which build the same model. A name of None
    is left out, and so are an image_sizes entry's unset keys.
    """
    data = config.to_dict()
    if data["name"] is None:
        del data["name"]
    if config.tune == TuneConfig():
        del data["tune"]  # most configs search nothing: no section of defaults in every run's config.yaml
    reads = MODEL_READS.get(config.model.name)
    if reads is not None:
        model = data["model"]
        data["model"] = {k: v for k, v in model.items() if k == "name" or k in reads.keys}
        if "blocks" in data["model"]:
            data["model"]["blocks"] = [{k: v for k, v in b.items() if k in reads.block_keys} for b in model["blocks"]]
    # An image_sizes entry sets one key of each pair (SizeStep): the unset ones would read as null.
    data["train"]["image_sizes"] = [{k: v for k, v in s.items() if v is not None} for s in data["train"]["image_sizes"]]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120)


class _Dumper(yaml.SafeDumper):
    """Sections and mappings one key a line; lists of plain values, and each mapping in a list
    (a model.blocks entry), on one line."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(not isinstance(v, (list, dict)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", [_Inline(v) if isinstance(v, dict) else v for v in data],
                                     flow_style=flat)


class _Inline(dict):
    """A mapping written on one line."""


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(_Inline, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data,
                                                                                flow_style=True))


def _above(value: Any, hi: float) -> bool:
    try:
        return value > hi
    except TypeError:
        return False


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML (what a run was trained with)."""
    path.write_text(config_yaml(config))

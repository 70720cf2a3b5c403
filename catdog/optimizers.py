"""Compiling a model for training from the `train` section of the config: the optimizer, its
learning-rate schedule, the loss, and the micro-batches one update averages.

Keras is imported inside functions, so that importing this module never starts TensorFlow
(training sets devices up first; the CLI's light commands never need it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from catdog.checkpoints import mode
from catdog.config import Config, TrainConfig
from catdog.devices import gpus, resolve_jit_compile
from catdog.errors import ConfigError

# Reduce on plateau: halve the rate after 2 epochs without improvement of train.monitor; on a few
# thousand photos validation numbers are noisy, so one bad epoch alone should not cut the rate.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 2
# A change smaller than this is no improvement (Keras's default).
PLATEAU_MIN_DELTA = 1e-4
# Fine-tuning an ImageNet backbone runs at a tenth of the head's rate: large steps would overwrite
# the pre-trained features the new head was just fitted to.
FINE_TUNE_FACTOR = 0.1
# Weight decay shrinks kernels only: biases and batch-norm scales and shifts set offsets and
# gains, and decaying them just fights the normalisation.
NO_DECAY = ["bias", "gamma", "beta"]


def check_schedule(t: TrainConfig, epochs: int, warmup: bool = True) -> None:
    """Raise ConfigError if `learning_rate` could not make the schedule for `epochs` epochs.

    Needs no data, so training calls it before reading photos or making a run folder.
    """
    if t.schedule == "plateau":
        if t.warmup_epochs:
            raise ConfigError(f"train.warmup_epochs works with the constant and cosine schedules; "
                              f"got {t.warmup_epochs} with schedule plateau")
        return


def warmup_epochs(t: TrainConfig, epochs: int) -> int:
    """train.warmup_epochs, clamped to leave at least one epoch at the full rate.

    A shortened run of a long config (`--set train.epochs=2`) should just train, so a warm-up as
    long as training shrinks to fit rather than failing; `train` says when it does.
    """
    return min(t.warmup_epochs, epochs - 1)


def learning_rate(t: TrainConfig, steps_per_epoch: int, epochs: int, base: float | None = None,
                  warmup: bool = True) -> Any:
    """The rate for `epochs` epochs of `steps_per_epoch` steps: a float or a Keras schedule.

    constant: `base` throughout; cosine: from `base` down to 0 over the epochs. Both start with a
    linear warm-up from 0 over train.warmup_epochs (when `warmup`). plateau: `base`, lowered by
    the callback from `plateau_callback`.

    Raises:
        ConfigError: warm-up asked of the plateau schedule.
    """
    import keras

    check_schedule(t, epochs, warmup)
    base = t.learning_rate if base is None else base
    warm_epochs = warmup_epochs(t, epochs) if warmup else 0
    if t.schedule == "plateau" or (t.schedule == "constant" and not warm_epochs):
        return base
    total, warm = steps_per_epoch * epochs, steps_per_epoch * warm_epochs
    # CosineDecay with alpha=1 never decays: the constant schedule's warm-up, serialisable as is.
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warm else base, max(total - warm, 1), alpha=1.0 if t.schedule == "constant" else 0.0,
        warmup_target=base if warm else None, warmup_steps=warm)


def make_optimizer(t: TrainConfig, rate: Any, accumulate: int = 1) -> Any:
    """The Keras optimizer named by train.optimizer, with train.weight_decay (decoupled) and
    train.ema (a moving average of the weights, see `ema_momentum`).

    With `accumulate` > 1 it averages the gradients of that many calls into one update.
    """
    import keras

    decay = t.weight_decay or None
    common: dict[str, Any] = {"gradient_accumulation_steps": accumulate if accumulate > 1 else None}
    if t.ema:
        common.update(use_ema=True, ema_momentum=ema_momentum(t.ema, accumulate))
    if t.optimizer == "adamw":
        # AdamW insists on a number; 0 means no decay, as for the others.
        opt = keras.optimizers.AdamW(rate, weight_decay=t.weight_decay, **common)
    elif t.optimizer == "sgd":
        # Momentum 0.9: plain SGD is too slow to be a fair choice for these networks.
        opt = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay, **common)
    elif t.optimizer == "rmsprop":
        opt = keras.optimizers.RMSprop(rate, weight_decay=decay, **common)
    else:
        opt = keras.optimizers.Adam(rate, weight_decay=decay, **common)
    if t.weight_decay:
        opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def ema_momentum(ema: float, accumulate: int = 1) -> float:
    """Keras's ema_momentum for train.ema per update when each update takes `accumulate` calls.

    Keras moves the average at every optimizer call, micro-batches included, and between two
    updates the weights stand still: k calls at momentum m weigh the old average by m**k. The k-th
    root makes the average span the same updates whatever the micro-batch size.
    """
    return float(ema ** (1.0 / accumulate))


def plateau_callback(t: TrainConfig, history: Callable[[], dict[str, list[float]]] | None = None) -> Any | None:
    """ReduceLROnPlateau for the plateau schedule, None for the others.

    Keras's own forgets its count at every fit call. With `history` (the epochs recorded so far)
    it picks up the best value and the epochs since the best or the last cut, so a run that
    resumes, or fine-tunes after a frozen backbone, cuts the rate when an uninterrupted one would.
    """
    if t.schedule != "plateau":
        return None
    import keras

    falls = mode(t.monitor) == "min"

    class Plateau(keras.callbacks.ReduceLROnPlateau):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            best, wait = None, 0
            for value in (history() if history else {}).get(t.monitor, []):
                if best is None or (value < best - PLATEAU_MIN_DELTA if falls else value > best + PLATEAU_MIN_DELTA):
                    best, wait = value, 0
                else:
                    wait += 1
                    if wait >= PLATEAU_PATIENCE:
                        wait = 0  # the rate was cut (the cut itself is in the optimizer's checkpoint)
            if best is not None:  # else Keras's own start (None or ±inf, by release)
                self.best, self.wait = best, wait

    return Plateau(t.monitor, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE, mode=mode(t.monitor),
                   min_delta=PLATEAU_MIN_DELTA, verbose=0)


def compile_model(model, config: Config, steps_per_epoch: int, epochs: int | None = None,
                  fine_tune: bool = False, accumulate: int | None = None, optimizer: Any = None) -> None:
    """Attach the optimizer, learning-rate schedule, loss and metrics the config asks for.

    Args:
        epochs: how many epochs the schedule spans (default train.epochs).
        fine_tune: the phase that trains an unfrozen backbone: a tenth of the rate, no warm-up.
        accumulate: micro-batches averaged into one update (default `accumulation(config, steps_per_epoch)`).
        optimizer: keep this optimizer, its schedule and state (a recompile that changes neither
            the rate nor what trains); default a new one.
    """
    import keras

    t = config.train
    if config.model.head == "sigmoid":
        loss = keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    with warnings.catch_warnings():
        # Keras's "Model doesn't support jit_compile=True" names no layer; train() says which.
        warnings.filterwarnings("ignore", "Model doesn't support `jit_compile=True`")
        if optimizer is None:
            base = t.learning_rate * (FINE_TUNE_FACTOR if fine_tune else 1.0)
            rate = learning_rate(t, steps_per_epoch, epochs or t.epochs, base, warmup=not fine_tune)
            if accumulate is None:
                accumulate = accumulation(config, steps_per_epoch)
            optimizer = make_optimizer(t, rate, accumulate)
        model.compile(optimizer=optimizer, loss=loss,
                      metrics=["accuracy"], jit_compile=resolve_jit_compile(t.jit_compile))


# See train.micro_batch: 32 kept the article model's epoch fastest on a 2-core CPU.
CPU_MICRO_BATCH = 32


def micro_batch(config: Config) -> int:
    """How many images one forward/backward pass computes: train.micro_batch, fitted to divide
    train.batch_size so that every update averages whole micro-batches."""
    t = config.train
    size = t.micro_batch
    if size is None:
        size = t.batch_size if t.distribute != "none" or gpus() else CPU_MICRO_BATCH
    size = min(size, t.batch_size)
    while t.batch_size % size:
        size -= 1
    return size


def accumulation(config: Config, steps_per_epoch: int) -> int:
    """Micro-batches averaged into one update: train.batch_size / micro-batch, but never more than
    an epoch has. Keras applies the update only when that many gradients have been summed, so an
    epoch of fewer micro-batches would otherwise end without changing a single weight."""
    return max(1, min(config.train.batch_size // micro_batch(config), steps_per_epoch))


def unjittable(model) -> str | None:
    """The name of the first layer (nested models included) that XLA cannot compile, if any."""
    for layer in model.layers:
        if not getattr(layer, "supports_jit", True):
            return layer.name
        inner = unjittable(layer) if hasattr(layer, "layers") else None
        if inner:
            return inner
    return None

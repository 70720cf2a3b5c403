"""The Keras callbacks training adds to fit: a stop on diverging numbers, per-epoch reseeding of
random layers, the epoch history, one line per epoch, and the learning-curves picture.

Keras is imported inside functions, so that importing this module never starts TensorFlow
(training sets devices up first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from catdog import plots
from catdog.cache import Progress
from catdog.checkpoints import best_index
from catdog.errors import TrainingError
from catdog.runs import write_json

LEARNING_CURVES_FILE = "learning_curves.png"

Report = Callable[[str], None]


def finite_guard():
    """A Keras callback that stops training with a TrainingError as soon as a loss or metric is
    not finite: NaN weights would otherwise be checkpointed and saved as the "best" model."""
    import keras

    class FiniteGuard(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            bad = {k: v for k, v in (logs or {}).items() if not math.isfinite(float(v))}
            if bad:
                key, value = next(iter(bad.items()))
                raise TrainingError(f"training diverged: {key} became {float(value)} in epoch {epoch + 1}; "
                                    f"lower train.learning_rate")

    return FiniteGuard()


def seed_generators(model) -> list:
    """Every keras.random.SeedGenerator of the model's layers (augmentation, dropout), nested
    models included, in a fixed order."""
    import keras

    found: list = []
    for layer in model.layers:
        # Keras offers no public list of a layer's generators; they are plain attributes.
        found += [v for _k, v in sorted(vars(layer).items()) if isinstance(v, keras.random.SeedGenerator)]
        if hasattr(layer, "layers"):
            found += seed_generators(layer)
    return found


def reseeder(model, seed: int):
    """A Keras callback that sets every random layer's generator from (seed, epoch, layer) at the
    start of each epoch, so that a resumed run draws the same augmentation and dropout as one
    never interrupted (the generators' running state is not part of a checkpoint)."""
    import keras

    generators = seed_generators(model)

    class Reseeder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            for i, gen in enumerate(generators):
                word = np.random.SeedSequence([seed, epoch, i]).generate_state(1)[0]
                gen.state.assign(np.array([word, 0], dtype="uint32"))

    return Reseeder()


def history_writer(path: Path | None, history: dict[str, list[float]] | None = None):
    """A Keras callback writing history.json after every epoch, so a crash keeps what was learned.

    `history` holds the epochs before a resume; new epochs are appended to it. With `path` None it
    only collects (training lets the checkpointer write the file after the epoch's checkpoint, so
    history.json never records an epoch that --resume would not continue from).
    """
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            if path is not None:
                write_json(path, self.history)

    return HistoryWriter()


def epoch_reporter(say: Report, epochs: int, batches: int, accumulate: int, progress: Progress | None):
    """A Keras callback that reports one plain line per epoch and feeds `progress` (done, total) batches.

    Keras's own progress bar counts optimizer calls, which are micro-batches here, and writes
    terminal control codes into log files; this counts the batches of train.batch_size a user set.
    """
    import keras

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if progress is not None:
                progress(min(-(-(batch + 1) // accumulate), batches), batches)

        def on_epoch_end(self, epoch, logs=None):
            numbers = "  ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
            say(f"epoch {epoch + 1}/{epochs}: {batches} batches in {time.perf_counter() - self.start:.1f} s  {numbers}")

    return EpochReport()


def learning_curves_callback(run_dir: Path, monitor: str | None = "val_loss") -> Any:
    """A Keras callback redrawing <run_dir>/learning_curves.png after every epoch.

    The epoch whose weights training keeps is marked: the best by `monitor` (lowest val_loss or
    highest val_accuracy), or with `monitor` None (train.keep_best off) the last one.
    """
    import keras

    class LearningCurves(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            kept = best_epoch(self.history, monitor) if monitor else len(next(iter(self.history.values()), []))
            plots.learning_curves(self.history, run_dir / LEARNING_CURVES_FILE, kept or None,
                                  kept_last=monitor is None)

    return LearningCurves()


def best_epoch(history: dict[str, list[float]], monitor: str | None = "val_loss") -> int | None:
    """The 1-based epoch with the best `monitor` value (falling back to val_loss), or None."""
    if monitor is None:
        return None
    key = monitor if history.get(monitor) else "val_loss"
    values = history.get(key)
    if not values:
        return None
    return best_index(values, key) + 1

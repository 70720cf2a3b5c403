"""Training: config and folder in, a complete run directory out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from catdog.cache import Progress
from catdog.config import Config, save_config
from catdog.data import Split, data_dir, prepare_folder, split
from catdog.dataset import batches
from catdog.runs import (CLASSES_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, SKIPPED_FILE, SPLIT_FILE,
                         claim_out_dir, new_run_dir, write_json)

Report = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished training run achieved and where it lives."""

    run_dir: Path
    device: str
    epochs: int
    best_epoch: int
    val_accuracy: float
    val_loss: float
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)

    def line(self) -> str:
        return (f"best epoch {self.best_epoch}/{self.epochs}: val_accuracy {self.val_accuracy:.4f}, "
                f"val_loss {self.val_loss:.4f}; {self.seconds:.1f} s; run {self.run_dir}")


def load_data(config: Config, data: str | Path | None, progress: Progress | None = None) -> Split:
    """Prepare the training (and validation) folders and split them by the config."""
    train = prepare_folder(config, data_dir(config, data), progress=progress)
    val = None
    if config.data.validation_dir:
        val = prepare_folder(config, config.data.validation_dir, classes=train.classes, progress=progress)
    return split(config, train, val)


def compile_model(model, config: Config, steps_per_epoch: int) -> None:
    """Attach the optimizer, loss and metrics the config asks for."""
    import keras

    t = config.train
    optimizers = {
        "adam": lambda: keras.optimizers.Adam(t.learning_rate),
        "adamw": lambda: keras.optimizers.AdamW(t.learning_rate, weight_decay=t.weight_decay),
        "sgd": lambda: keras.optimizers.SGD(t.learning_rate, momentum=0.9),
        "rmsprop": lambda: keras.optimizers.RMSprop(t.learning_rate),
    }
    if config.model.head == "sigmoid":
        loss = keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    from catdog.devices import resolve_jit_compile

    model.compile(optimizer=optimizers[t.optimizer](), loss=loss, metrics=["accuracy"],
                  jit_compile=resolve_jit_compile(t.jit_compile))


def history_writer(path: Path):
    """A Keras callback writing history.json after every epoch, so a crash keeps what was learned."""
    import keras

    class HistoryWriter(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.history: dict[str, list[float]] = {}

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                self.history.setdefault(key, []).append(float(value))
            write_json(path, self.history)

    return HistoryWriter()


def train(config: Config, data: str | Path | None = None, out: str | Path | None = None,
          report: Report | None = None, progress: Progress | None = None, verbose: int | str = "auto") -> TrainResult:
    """Train the configured model on a photo folder and write a run directory.

    Args:
        config: the resolved config.
        data: the training folder (default `data.dir`).
        out: the run folder to create (default a new folder under runs/).
        report: receives one-line status messages (device, split sizes, ...).
        progress: receives (done, total) while images are being prepared.
        verbose: Keras's fit verbosity (1: a progress bar per epoch, 0: silent).

    Raises:
        CatdogError: bad data, bad config or an unusable output folder.
    """
    say = report or (lambda _msg: None)
    from catdog import distribute

    # First of all: multi-worker training and GPU memory growth must be set before TensorFlow runs.
    dist = distribute.start(config)
    sp = load_data(config, data, progress)
    classes = sp.train.classes
    say(f"data: {len(sp.train_idx)} train, {len(sp.val_idx)} validation, {len(sp.test_idx)} test images; "
        f"classes {', '.join(classes)}; {len(sp.train.skipped)} skipped")

    # Only the chief worker writes the run folder; other workers save into a scratch folder.
    run_dir = ((claim_out_dir(Path(out)) if out else new_run_dir(config.model.name)) if dist.chief
               else dist.scratch_dir())
    save_config(config, run_dir / CONFIG_FILE)
    write_json(run_dir / CLASSES_FILE, classes)
    write_json(run_dir / SPLIT_FILE, sp.record())
    (run_dir / SKIPPED_FILE).write_text("".join(f"{f}: {r}\n" for f, r in sp.train.skipped))

    from catdog.devices import training_device
    from catdog.models import build_model

    device = training_device()
    say(f"training on {device}; {dist.describe()}; run folder {run_dir}")
    # The strategy (or JAX's device layout) and the precision policy cover build, compile and fit.
    with dist.scope():
        model = build_model(config, len(classes))
        sigmoid = config.model.head == "sigmoid"
        t = config.train
        train_batches = dist.feed(batches(sp.train.images, sp.train.rows[sp.train_idx],
                                          sp.train.row_targets(sigmoid), t.batch_size, shuffle=True, seed=config.seed))
        val_batches = dist.feed(batches(sp.val.images, sp.val.rows[sp.val_idx], sp.val.row_targets(sigmoid),
                                        t.batch_size))
        compile_model(model, config, len(train_batches))

        writer = history_writer(run_dir / HISTORY_FILE)
        from catdog.pictures import learning_curves_callback

        curves = learning_curves_callback(run_dir, t.monitor, say)
        start = time.perf_counter()
        model.fit(train_batches, validation_data=val_batches, epochs=t.epochs, callbacks=[writer, curves],
                  verbose=verbose)
        seconds = time.perf_counter() - start
    model.save(run_dir / MODEL_FILE)

    history = writer.history
    monitor = t.monitor if t.monitor in history else "val_loss"
    values = history[monitor]
    best = (values.index(min(values)) if monitor == "val_loss" else values.index(max(values)))
    return TrainResult(run_dir, device, len(values), best + 1, history["val_accuracy"][best],
                       history["val_loss"][best], seconds, history)


def read_history(run_dir: Path) -> dict[str, list[float]]:
    path = run_dir / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}

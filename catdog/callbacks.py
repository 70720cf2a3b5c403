"""The Keras callbacks training adds to fit: a stop on diverging numbers, per-epoch reseeding of
random layers, early stopping across phases and resumes, one line per epoch, the
learning-curves picture and the TensorBoard logs. (Checkpoints and the best weights: catdog.checkpoints.)

Keras is imported inside functions, so that importing this module never starts TensorFlow
(training sets devices up first).
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from catdog import plots
from catdog.cache import Progress
from catdog.checkpoints import best_index, mode
from catdog.errors import TrainingError

LEARNING_CURVES_FILE = "learning_curves.png"
# Keras's TensorBoard callback writes train/ and validation/ under it.
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_MISSING = ("TensorBoard logs not written: the tensorboard package is missing; "
                       "pip install 'catdog[tensorboard]' (or --set train.tensorboard=null)")

Report = Callable[[str], None]


@contextlib.contextmanager
def ctrl_c_between_batches() -> Iterator[Any]:
    """Within the block, a Ctrl-C (SIGINT) is raised as KeyboardInterrupt only where the yielded
    Keras callback runs (first in fit's list): after a batch, or as an epoch or fit begins; a press
    the callback never saw is raised as the block ends. A second press raises at once.

    Raised wherever the signal lands, a KeyboardInterrupt can land inside TensorFlow's C++ (Keras
    resetting its metrics converts a value to a tensor) and crash the process with a segmentation
    fault before anything says which epoch is saved: 2 of about 70 presses timed right after an
    epoch's line of catdog train. Outside the main thread, where Python cannot take signals, or
    where SIGINT is ignored (a job a shell started with &), the callback does nothing.
    """
    import keras

    pressed = threading.Event()

    class CtrlC(keras.callbacks.Callback):
        def stop_if_pressed(self, *_args, **_kwargs) -> None:
            if pressed.is_set():
                pressed.clear()  # raised once: a caller that goes on training can be stopped again
                raise KeyboardInterrupt

        on_train_begin = on_epoch_begin = on_train_batch_end = on_test_batch_end = stop_if_pressed

    def press(signum, frame) -> None:
        if pressed.is_set():
            raise KeyboardInterrupt
        pressed.set()

    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    # None: not the main thread, or a handler Python did not install (it could not be put back).
    if previous is None or previous == signal.SIG_IGN:
        yield CtrlC()
        return
    signal.signal(signal.SIGINT, press)
    try:
        yield CtrlC()
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed.is_set():
        raise KeyboardInterrupt


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


def early_stopping(monitor: str, patience: int, history: Callable[[], dict[str, list[float]]]):
    """Keras's EarlyStopping, counting the epochs without improvement over the whole run.

    Keras's own starts counting afresh at every fit call; a run spans two fit calls when it
    fine-tunes after a frozen backbone, and a resumed run starts a new one, so this one picks up
    the best value and the epochs since it from `history` (the epochs recorded so far).
    """
    import keras

    class EarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            values = history().get(monitor)
            if values:
                best = best_index(values, monitor)
                self.best, self.best_epoch, self.wait = values[best], best, len(values) - 1 - best

    return EarlyStopping(monitor=monitor, patience=patience, mode=mode(monitor))


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


def learning_curves_callback(run_dir: Path, history: Callable[[], dict[str, list[float]]],
                             monitor: str | None = "val_loss") -> Any:
    """A Keras callback redrawing <run_dir>/learning_curves.png from `history` after every epoch.

    The epoch whose weights training keeps is marked: the best by `monitor` (lowest val_loss or
    highest val_accuracy), or with `monitor` None (train.keep_best off) the last one.
    """
    import keras

    class LearningCurves(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            hist = history()
            kept = best_epoch(hist, monitor) if monitor else len(next(iter(hist.values()), []))
            plots.learning_curves(hist, run_dir / LEARNING_CURVES_FILE, kept or None, kept_last=monitor is None)

    return LearningCurves()


def tensorboard_callback(run_dir: Path) -> Any:
    """Keras's TensorBoard callback writing <run_dir>/tensorboard/{train,validation}: each epoch's
    numbers and the learning rate, at step = the 0-based epoch, or None when the tensorboard package
    is missing (tf.summary.scalar is TensorBoard's: TensorFlow alone cannot write them) or
    TensorFlow is (Keras writes them through tf.summary under every backend).

    Placed after the checkpointer, it logs only epochs that a resume will not run again, so a
    resumed run (fit's initial_epoch) continues the same logs without a step written twice. Each
    epoch is on disk when it ends (the writer flushes as Keras leaves its as_default), so TensorBoard
    shows a run live and a killed run keeps its epochs.
    """
    if not (importable("tensorboard") and importable("tensorflow")):
        return None
    import keras

    class TensorBoard(keras.callbacks.TensorBoard):
        def on_test_end(self, logs=None):
            # Keras adds evaluation_*_vs_iterations at the optimizer's step count, which starts
            # again at 0 when a frozen backbone's fine-tuning compiles a new optimizer: steps would
            # repeat. The epoch numbers hold the same values.
            pass

    # write_graph off: the model summary it writes at step 0 on every fit call (each phase, each
    # resume) would repeat step 0, and JAX has no graph to show.
    return TensorBoard(log_dir=str(run_dir / TENSORBOARD_DIR), write_graph=False)


def importable(name: str) -> bool:
    """Whether `import name` would find a package (one hidden as sys.modules[name] = None is not)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:
        return False


def best_epoch(history: dict[str, list[float]], monitor: str | None = "val_loss") -> int | None:
    """The 1-based epoch with the best `monitor` value (falling back to val_loss), or None."""
    if monitor is None:
        return None
    key = monitor if history.get(monitor) else "val_loss"
    values = history.get(key)
    if not values:
        return None
    return best_index(values, key) + 1


class TrialStopped(Exception):  # noqa: N818  (a stop, not a failure: catdog.tune catches it)
    """A `catdog tune` trial stops early: `reason` is "pruned" or "budget"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def trial_watch(trial: Any, epochs: int, deadline: float, finish_seconds: float,
                clock: Callable[[], float] = time.monotonic):
    """A Keras callback for one `catdog tune` trial: reports val_accuracy to the Optuna `trial`
    after each epoch, and stops training by raising TrialStopped when the pruner says so, when the
    next epoch would end past the search's `deadline` (on `clock`; for the last epoch of `epochs`,
    with `finish_seconds` of saving after it), or when the deadline passes within an epoch.

    It raises rather than set `stop_training`: Keras would then validate a half epoch and record it
    as a whole one, and save a model nobody asked for (the ONNX export alone takes seconds). Placed
    after the checkpointer, it leaves the run folder an interrupted run at its last whole epoch,
    which `catdog runs` lists as stopped. `.epoch_seconds` lists each epoch's time and `.started`
    when the first began.
    """
    import keras

    class TrialWatch(keras.callbacks.Callback):
        started: float | None = None
        epoch_seconds: list[float] = []

        def on_train_begin(self, logs=None):
            if self.started is None:
                self.started, self.epoch_seconds = clock(), []

        def on_epoch_begin(self, epoch, logs=None):
            self.begin = clock()

        def on_train_batch_end(self, batch, logs=None):
            if clock() >= deadline:
                raise TrialStopped("budget")

        def on_epoch_end(self, epoch, logs=None):
            now = clock()
            self.epoch_seconds.append(now - self.begin)
            value = (logs or {}).get("val_accuracy")
            if value is not None:
                trial.report(float(value), epoch)
                if trial.should_prune():
                    raise TrialStopped("pruned")
            # The last epoch's time (the first also traced and compiled the model); saving follows
            # only the last epoch.
            after = finish_seconds if epoch + 2 == epochs else 0.0
            if epoch + 1 < epochs and now + self.epoch_seconds[-1] + after > deadline:
                raise TrialStopped("budget")

    return TrialWatch()

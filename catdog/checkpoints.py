"""Checkpoints at every epoch, the best epoch's weights, and resuming a run.

A run folder being trained holds checkpoint/: `state.json` names the last complete epoch's
checkpoint (weights and optimizer state) and the best epoch's weights, and holds the run's
history (the one copy training keeps). Files are written first and named second, so a run
killed at any moment (kill -9 included) leaves a state that points at complete files only.

The best epoch's weights are Keras's ModelCheckpoint. The per-epoch checkpoint is catdog's own
rather than Keras's BackupAndRestore, which cannot do two things training needs: it writes its
weights and its epoch number in place one after the other (a kill between them resumes the wrong
epoch), and the epoch it restores stays on the model and overrides `initial_epoch` of every later
fit call, which would rerun epochs in the fine-tuning phase that follows a frozen backbone.

Keras and h5py are imported inside functions, so that importing this module never starts
TensorFlow (training sets devices up first).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catdog.errors import RunError, naming, shown
from catdog.runs import MODEL_FILE, write_json

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"


@dataclass
class State:
    """Where an interrupted run stands: what `catdog train --resume` continues from."""

    epochs_done: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    checkpoint: str | None = None  # weights and optimizer state after `epochs_done` epochs
    phase: int = 0  # the training phase that wrote the checkpoint (frozen backbone or not)
    best_epoch: int | None = None  # 1-based, by train.monitor
    best_weights: str | None = None
    seconds: float = 0.0  # training time before the interruption
    data: str | None = None  # the training folder, so a resume needs no --data
    stopped: bool = False  # early stopping ended training: a resume only saves the model

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def read_state(run_dir: str | Path) -> State:
    """The state an interrupted run left in its folder.

    Raises:
        RunError: no such folder, a finished run, or no complete epoch to resume from.
    """
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    if not run_dir.is_dir():
        raise RunError(f"--resume {run_dir}: run folder not found")
    if not path.is_file():
        if (run_dir / MODEL_FILE).is_file():
            raise RunError(f"--resume {run_dir}: this run finished ({MODEL_FILE} is there); nothing to resume")
        raise RunError(f"--resume {run_dir}: no completed epoch to resume from ({CHECKPOINT_DIR}/{STATE_FILE} "
                       f"missing); start it again with catdog train")
    try:
        state = State(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise RunError(f"--resume {run_dir}: {path} is damaged ({shown(exc, 120)})") from None
    folder = run_dir / CHECKPOINT_DIR
    for name in (state.checkpoint, state.best_weights):
        if name is None:
            continue
        # Runs interrupted before catdog kept its best weights with ModelCheckpoint hold an .npz.
        check = _npz_whole if name.endswith(".npz") else _h5_whole
        if not (folder / name).is_file():
            raise RunError(f"--resume {run_dir}: {folder / name} is missing; start again with catdog train")
        if not check(folder / name):
            raise RunError(f"--resume {run_dir}: {folder / name} is damaged or truncated; start again with "
                           f"catdog train")
    return state


def _h5_whole(path: Path) -> bool:
    """Whether a .weights.h5 file opens and lists its groups (a truncated HDF5 file does not)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.visit(lambda _name: None)
        return True
    except (OSError, ValueError, RuntimeError):
        return False


def _npz_whole(path: Path) -> bool:
    """Whether an .npz file's arrays can all be read back."""
    try:
        with np.load(path) as arrays:
            for key in arrays.files:
                arrays[key]
        return True
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return False


def best_index(values: list[float], monitor: str) -> int:
    """0-based position of the best value: the lowest loss or the highest accuracy (first wins ties)."""
    return int(np.argmin(values) if monitor.endswith("loss") else np.argmax(values))


def mode(monitor: str) -> str:
    """Keras's `mode` for a monitored value: losses fall, accuracies rise."""
    return "min" if monitor.endswith("loss") else "max"


BEST_FILE = "best-{epoch:04d}.weights.h5"  # ModelCheckpoint fills in the 1-based epoch


def best_keeper(run_dir: Path, monitor: str, state: State) -> Any:
    """Keras's ModelCheckpoint saving the weights of each epoch that improves `monitor`.

    Each best epoch gets its own file, named in state.json only after it is complete (by the
    checkpointer, which runs after this callback); a resumed run starts from the best so far.
    """
    import keras

    values = state.history.get(monitor)
    return keras.callbacks.ModelCheckpoint(
        str(run_dir / CHECKPOINT_DIR / BEST_FILE), monitor=monitor, mode=mode(monitor), save_best_only=True,
        save_weights_only=True, initial_value_threshold=values[best_index(values, monitor)] if values else None)


# Room beyond the two weight files an epoch writes: state.json, history.json, the curves picture.
CHECKPOINT_MARGIN = 256 * 1024


def room_check(run_dir: Path, free: Callable[[Path], int] = lambda path: shutil.disk_usage(path).free) -> Any:
    """A Keras callback, first at each epoch's end, that fails with "No space left on device"
    naming the checkpoint folder when its disk cannot hold this epoch's files.

    An HDF5 write that runs out of room part-way can take the whole process down with it (h5py
    3.16 did, in tests/test_faults.py), so the room is checked before the best weights and the
    checkpoint are written: both hold every weight and the optimizer's state. `free` gives the
    bytes free on a folder's disk.
    """
    import keras

    folder = run_dir / CHECKPOINT_DIR

    class RoomCheck(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            variables = [*self.model.weights, *self.model.optimizer.variables]
            need = 2 * sum(int(np.prod(v.shape)) * 4 for v in variables) + CHECKPOINT_MARGIN
            if free(folder) < need:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))

    return RoomCheck()


def checkpointer(run_dir: Path, monitor: str, state: State, clock: Callable[[], float],
                 history_file: Path | None = None) -> Any:
    """A Keras callback that records each epoch in `state` and checkpoints it.

    After every epoch: the logs are appended to state.history, the weights and optimizer state
    saved, then state.json names them (and the best epoch's weights, when the best keeper wrote
    them), then history.json is rewritten, and files no longer named are removed.

    Args:
        state: the state to continue (a fresh State for a new run); updated in place.
        clock: seconds of training so far, including time before any interruption.
        history_file: where to write the history after the epoch's checkpoint is named.
    """
    import keras

    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(exist_ok=True)

    class Checkpointer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.phase = state.phase

        def on_epoch_end(self, epoch, logs=None):
            epochs = epoch + 1
            for key, value in (logs or {}).items():
                state.history.setdefault(key, []).append(float(value))
            checkpoint = f"epoch-{epochs:04d}.weights.h5"
            with naming(folder / checkpoint):
                self.model.save_weights(folder / checkpoint)
            if (folder / BEST_FILE.format(epoch=epochs)).is_file():
                state.best_weights = BEST_FILE.format(epoch=epochs)
            state.epochs_done, state.checkpoint, state.phase, state.seconds = epochs, checkpoint, self.phase, clock()
            state.best_epoch = best_index(state.history[monitor], monitor) + 1
            state.stopped = bool(self.model.stop_training)
            write_json(folder / STATE_FILE, state.to_dict())
            if history_file is not None:
                write_json(history_file, state.history)
            for old in folder.iterdir():
                if old.name not in (STATE_FILE, checkpoint, state.best_weights):
                    old.unlink()

    return Checkpointer()


def restore_best(model: Any, run_dir: Path, state: State) -> None:
    """Load the best epoch's weights into `model` (nothing when none were kept)."""
    if state.best_weights is None:
        return
    path = run_dir / CHECKPOINT_DIR / state.best_weights
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])
        return
    with warnings.catch_warnings():
        # A best epoch of the frozen phase holds fewer optimizer variables than the fine-tuning
        # phase compiles; only the model's weights are wanted here.
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model.load_weights(path)


def restore_checkpoint(model: Any, run_dir: Path, state: State) -> None:
    """Load the last checkpoint (weights and optimizer state) into a model compiled as it was saved."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(run_dir / CHECKPOINT_DIR / str(state.checkpoint))


def finish(run_dir: Path) -> None:
    """Remove the checkpoints of a run whose model is saved: they are no use to a finished run."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)

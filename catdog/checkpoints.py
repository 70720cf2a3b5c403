"""Checkpoints at every epoch, the best epoch's weights, early stopping, and resuming a run.

A run folder being trained holds checkpoint/: `state.json` names the last complete epoch's
checkpoint (weights and optimizer state) and the best epoch's weights, and records the history
so far. Files are written first and named second, so a run killed at any moment (kill -9
included) leaves a state that points at complete files only.

Keras and h5py are imported inside functions, so that importing this module never starts
TensorFlow (training sets devices up first).
"""

from __future__ import annotations

import json
import os
import shutil
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
    for name, check in ((state.checkpoint, _h5_whole), (state.best_weights, _npz_whole)):
        if name is None:
            continue
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


def checkpointer(run_dir: Path, monitor: str, keep_best: bool, patience: int,
                 history: Callable[[], dict[str, list[float]]], state: State,
                 clock: Callable[[], float], history_file: Path | None = None) -> Any:
    """A Keras callback that checkpoints every epoch, keeps the best weights and stops early.

    Args:
        history: the history so far, read after each epoch (the history writer runs first).
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
            # Set when `patience` epochs passed without a better `monitor`.
            self.stopped = False

        def on_epoch_end(self, epoch, logs=None):
            hist = history()
            epochs = epoch + 1
            best = best_index(hist[monitor], monitor) + 1
            checkpoint = f"epoch-{epochs:04d}.weights.h5"
            with naming(folder / checkpoint):
                self.model.save_weights(folder / checkpoint)
            if keep_best and best == epochs:
                # Model weights only, as arrays: they load into either phase's compiled model.
                name = f"best-{epochs:04d}.npz"
                with naming(folder / name), open(folder / (name + ".tmp"), "wb") as f:
                    np.savez(f, *self.model.get_weights())
                os.replace(folder / (name + ".tmp"), folder / name)
                state.best_weights = name
            state.epochs_done, state.history, state.checkpoint = epochs, hist, checkpoint
            state.phase, state.best_epoch, state.seconds = self.phase, best, clock()
            write_json(folder / STATE_FILE, state.to_dict())
            if history_file is not None:
                write_json(history_file, hist)
            for old in folder.iterdir():
                if old.name not in (STATE_FILE, checkpoint, state.best_weights):
                    old.unlink()
            if patience and epochs - best >= patience:
                self.stopped = True
                self.model.stop_training = True

    return Checkpointer()


def restore_best(model: Any, run_dir: Path, state: State) -> None:
    """Load the best epoch's weights into `model` (nothing when none were kept)."""
    if state.best_weights is None:
        return
    with np.load(run_dir / CHECKPOINT_DIR / state.best_weights) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def restore_checkpoint(model: Any, run_dir: Path, state: State) -> None:
    """Load the last checkpoint (weights and optimizer state) into a model compiled as it was saved."""
    model.optimizer.build(model.trainable_variables)
    model.load_weights(run_dir / CHECKPOINT_DIR / str(state.checkpoint))


def finish(run_dir: Path) -> None:
    """Remove the checkpoints of a run whose model is saved: they are no use to a finished run."""
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)

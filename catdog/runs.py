"""Run directories: everything needed to use a trained model later, in one folder.

Keras (and catdog.layers) are imported inside functions: reading a run's files and its ONNX
model needs no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog.config import Config, config_from_dict, read_yaml
from catdog.errors import RunError, replacing, shown

if TYPE_CHECKING:
    from catdog.cache import Progress
    from catdog.evaluation import EvalReport
    from catdog.prediction import Inputs, Prediction
    from catdog.training import TrainResult

RUNS_ROOT = Path("runs")
MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.json"
SPLIT_FILE = "split.json"
SKIPPED_FILE = "skipped.txt"
# The copy of the decisions file (data.decisions) a run trained with, named after its kind.
DECISIONS_FILES = ("decisions.csv", "decisions.yaml")
# What training did, written when the model is saved: its seconds and epochs (catdog runs reads it).
TRAINED_FILE = "training.json"
# Held (flock) by the process training a run; the kernel lets go of it when that process dies.
LOCK_FILE = "training.lock"
# catdog.checkpoints' CHECKPOINT_DIR/STATE_FILE (that module imports this one): the last saved epoch.
_STATE = Path("checkpoint") / "state.json"


def run_name(config: Config) -> str:
    """The name part of a new run folder: the config's name (a built-in config's, a file's stem),
    else the model's, with anything but letters, digits, `.`, `_` and `-` made `-`."""
    name = re.sub(r"[^\w.-]+", "-", config.name or "", flags=re.ASCII).strip(".-")[:60]
    return name or config.model.name


def new_run_dir(name: str, root: Path = RUNS_ROOT) -> Path:
    """A fresh folder runs/<time>-<name>, never one that already exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (f"{stamp}-{name}" if i == 0 else f"{stamp}-{name}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RunError(f"could not create a new run folder under {root}")


def claim_out_dir(path: Path) -> Path:
    """Use `--out` as the run folder, refusing one that already holds files (they are the user's)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunError(f"--out {path} already exists and is not empty; pick a new folder (or --resume it)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_run(run: str | Path | None, root: Path = RUNS_ROOT) -> Path:
    """`run` if given, else the most recent run under runs/ that holds a model.

    Raises:
        RunError: no such folder, or no model in it: saying so when the run is still training or
            was interrupted (with the command that resumes it).
    """
    if run is not None:
        path = Path(run)
        if not path.is_dir():
            raise RunError(f"run folder not found: {path} (expected a folder written by catdog train)")
        if not (path / MODEL_FILE).is_file():
            raise RunError(unfinished(path) or f"{path} holds no trained model ({MODEL_FILE}); train one with "
                           f"catdog train")
        return path
    candidates = sorted(p for p in root.glob("*") if (p / MODEL_FILE).is_file()) if root.is_dir() else []
    if not candidates:
        started = [p for p in root.glob("*") if (p / CONFIG_FILE).is_file()] if root.is_dir() else []
        latest = max(started, key=lambda p: p.stat().st_mtime, default=None)
        if latest is not None and (why := unfinished(latest)) is not None:
            raise RunError(f"no finished run under {root}/ yet: {why}")
        raise RunError(f"no trained run found under {root}/; train one with catdog train, or pass --run RUN_DIR")
    return max(candidates, key=lambda p: (p / MODEL_FILE).stat().st_mtime)


def unfinished(path: Path) -> str | None:
    """Why a run folder holds no model yet: it is training now, or was interrupted (and how to go
    on); None when it is neither."""
    if training_now(path):
        return (f"{shown(path)} is still training (no {MODEL_FILE} yet); wait until catdog train finishes it, "
                f"or pass --run with a finished run")
    try:
        done = json.loads((path / _STATE).read_text())["epochs_done"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (f"{shown(path)} was interrupted after epoch {done} and holds no {MODEL_FILE}; continue it with "
            f"catdog train --resume {shown(path)}")


def training_now(path: Path) -> bool:
    """Whether a process holds the run folder's training lock (see `training_lock`)."""
    try:
        f = open(path / LOCK_FILE)  # noqa: SIM115 (closed below; flock needs the open file)
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


@contextlib.contextmanager
def training_lock(path: Path) -> Iterator[None]:
    """Hold the run folder's training lock while the block trains it, so that `predict` can say
    the run is in progress and a second `train --resume` of it is refused. An flock: a training
    killed even by kill -9 holds it no longer. The file is removed when the block ends.

    Raises:
        RunError: another process is training this run folder.
    """
    lock = path / LOCK_FILE
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"{shown(path)} is being trained by another process; wait for it to finish") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (a temporary file renamed over `path`); see `finite`."""
    tmp = path.with_name(path.name + ".tmp")
    with replacing(path, tmp):
        tmp.write_text(json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def finite(data: Any) -> Any:
    """`data` with every NaN or infinite float as None: bare NaN is not JSON, and no reader takes it."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


@dataclass
class Run:
    """A trained run loaded back: its folder, config, class names and (lazily) its Keras model.

    `catdog.open_run(path)` opens one; `catdog.train` returns one.
    """

    dir: Path
    config: Config
    classes: list[str]
    _model: Any = None
    # What training achieved, on a run that `catdog.train` or `catdog.resume` has just returned.
    result: TrainResult | None = None

    def predict(self, inputs: Inputs, *, tta: bool = False) -> list[Prediction]:
        """The model's answers, in order: one per photo file (folders searched), or one per array.

        Args:
            inputs: a photo path or folder, a list of them, or RGB uint8 pixels: one (H, W, 3)
                array, a list of them, or an (N, H, W, 3) batch, of any size (fitted to the
                model's as a photo file is).
            tta: average each answer with its mirror image's (two passes).

        Raises:
            ImageError: an array of the wrong shape or dtype. DataError: no files at the paths.
            A file that cannot be read is not raised: its Prediction has `error` set.
        """
        from catdog.prediction import predict  # imports this module

        return list(predict(inputs, self, tta=tta))

    def evaluate(self, data: str | Path | None = None, *, tta: bool = False,
                 progress: Progress | None = None, out: str | Path | None = None) -> EvalReport:
        """Score the run on a labelled folder (default: its own held-out photos); the report is
        also written into the run folder (report.json, photos.csv, pictures), or into `out`.

        Raises:
            DataError: the folder is missing, or its classes are not the run's.
        """
        from catdog.evaluation import evaluate  # imports this module

        return evaluate(self, data, progress=progress, tta=tta, out=out)

    @property
    def model(self):
        if self._model is None:
            model = load_model(self.dir / MODEL_FILE)
            check_outputs(model, self.classes, self.dir)
            check_input_size(model, self.config, self.dir)
            from catdog.runtime import check_trained_config  # catdog.runtime imports this module

            check_trained_config(self)  # the resize mode, recorded beside model.onnx
            self._model = model
        return self._model

    def split(self) -> dict | None:
        path = self.dir / SPLIT_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def load_model(path: Path) -> Any:
    """Load a saved Keras model, turning every way a model file can fail into one RunError line.

    Keras reports a truncated or damaged archive as "File not found" or a zipfile error, and its
    safe mode refuses a layer that would run arbitrary code (a Lambda) in a many-line message.

    Raises:
        RunError: naming the file and what is wrong with it.
    """
    import keras

    import catdog.layers  # noqa: F401  (registers custom layers for deserialisation)

    if not zipfile.is_zipfile(path):
        raise RunError(f"{shown(path)} is damaged or truncated (not a complete .keras archive); retrain, "
                       f"or copy the run folder again")
    try:
        return keras.saving.load_model(path)
    except Exception as exc:  # noqa: BLE001 (Keras raises anything from a bad file; all mean the same)
        text = " ".join(str(exc).split())
        if "safe_mode" in text or "Lambda" in text:
            raise RunError(f"{shown(path)} holds a layer that runs arbitrary code (a Lambda), which Keras's "
                           f"safe mode refuses to load; only load model files you trust") from None
        raise RunError(f"{shown(path)} cannot be loaded ({type(exc).__name__}: {shown(text, 160)}); retrain, "
                       f"or copy the run folder again") from None


def check_outputs(model: Any, classes: list[str], run_dir: Path) -> None:
    """Refuse a model whose outputs do not match the run's class names (a 1-unit sigmoid is two classes).

    Raises:
        RunError: classes.json names more or fewer classes than the model answers for.
    """
    units = model.output_shape[-1]
    expected = 2 if units == 1 else units
    if len(classes) != expected:
        raise RunError(f"{shown(run_dir / CLASSES_FILE)} names {len(classes)} classes but the model has "
                       f"{expected} outputs; restore the run's own {CLASSES_FILE} or retrain")


def check_input_size(model: Any, config: Config, run_dir: Path) -> None:
    """Refuse a config.yaml whose data.image_size is not the model's input size (edited after training):
    photos would be resized to a size the model cannot take.

    Raises:
        RunError: naming config.yaml, both sizes and the fix.
    """
    size = [int(n) if n is not None else None for n in model.input_shape[1:3]]
    wanted = list(config.data.image_size)
    if None not in size and size != wanted:
        raise RunError(f"{shown(run_dir / CONFIG_FILE)}: data.image_size is {wanted} but {MODEL_FILE} takes "
                       f"{size[0]}x{size[1]} images; restore data.image_size: {size} (config.yaml records the "
                       f"training; it is not a setting to change)")


def read_classes(path: Path) -> list[str]:
    """The class names of a run: a JSON list of at least two distinct strings."""
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RunError(f"{shown(path)} is damaged (not a JSON list of class names); restore it or retrain") from None
    if (not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes)
            or len(set(classes)) != len(classes)):
        raise RunError(f"{shown(path)} must be a list of at least two distinct class names; restore it or retrain")
    return classes


def read_run_config(run_dir: Path) -> Config:
    """The resolved config a run was trained with (config.yaml), checked like any config.

    Raises:
        RunError: the file is missing. ConfigError: it is damaged or not a valid config.
    """
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{shown(run_dir)} has no {CONFIG_FILE}; restore it from a copy of the run or retrain")
    return config_from_dict(read_yaml(path) or {}, str(path))


def run_decisions(run_dir: Path, config: Config) -> Config:
    """The run's config with `data.decisions` naming the run's own copy of its decisions file, so
    that evaluating or resuming it applies the decisions it trained with, whatever became of the
    user's file since.

    Raises:
        RunError: config.yaml names a decisions file, but the run folder holds no copy of it.
    """
    copy = next((run_dir / name for name in DECISIONS_FILES if (run_dir / name).is_file()), None)
    if copy is not None:
        return config.replace(data=dataclasses.replace(config.data, decisions=str(copy)))
    if config.data.decisions:
        raise RunError(f"{shown(run_dir / CONFIG_FILE)} names the decisions file {shown(config.data.decisions)}, "
                       f"but the run folder holds no copy of it ({' or '.join(DECISIONS_FILES)}); restore it "
                       f"from a copy of the run")
    return config


def load_run(run: str | Path | None = None) -> Run:
    """Open a run folder (default: the latest) for evaluation, prediction or inspection.

    Raises:
        RunError: no such run, or its config or class names are missing or damaged (the model
            itself is checked when first used).
    """
    path = resolve_run(run)
    config = read_run_config(path)
    if not (path / CLASSES_FILE).is_file():
        raise RunError(f"{shown(path)} has no {CLASSES_FILE}; restore it from a copy of the run or retrain")
    return Run(path, config, read_classes(path / CLASSES_FILE))

"""Run directories: everything needed to use a trained model later, in one folder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catdog.config import Config, config_from_dict
from catdog.errors import RunError

RUNS_ROOT = Path("runs")
MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.json"
SPLIT_FILE = "split.json"
SKIPPED_FILE = "skipped.txt"


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
    """`run` if given, else the most recent run under runs/ that holds a model."""
    if run is not None:
        path = Path(run)
        if not path.is_dir():
            raise RunError(f"run folder not found: {path} (expected a folder written by catdog train)")
        if not (path / MODEL_FILE).is_file():
            raise RunError(f"{path} holds no trained model ({MODEL_FILE}); train one with catdog train")
        return path
    candidates = sorted(p for p in root.glob("*") if (p / MODEL_FILE).is_file()) if root.is_dir() else []
    if not candidates:
        raise RunError(f"no trained run found under {root}/; train one with catdog train, or pass --run RUN_DIR")
    return max(candidates, key=lambda p: (p / MODEL_FILE).stat().st_mtime)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


@dataclass
class Run:
    """A trained run loaded back: its folder, config, class names and (lazily) its Keras model."""

    dir: Path
    config: Config
    classes: list[str]
    _model: Any = None

    @property
    def model(self):
        if self._model is None:
            import keras

            import catdog.layers  # noqa: F401  (registers custom layers for deserialisation)

            self._model = keras.saving.load_model(self.dir / MODEL_FILE)
        return self._model

    def split(self) -> dict | None:
        path = self.dir / SPLIT_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def load_run(run: str | Path | None = None) -> Run:
    """Open a run folder (default: the latest) for evaluation, prediction or inspection."""
    import yaml

    path = resolve_run(run)
    try:
        config = config_from_dict(yaml.safe_load((path / CONFIG_FILE).read_text()) or {}, str(path / CONFIG_FILE))
        classes = json.loads((path / CLASSES_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is incomplete or damaged ({exc}); retrain or pick another run") from None
    return Run(path, config, classes)

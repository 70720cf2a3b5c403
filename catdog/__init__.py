"""catdog: train Keras convolutional networks on folders of photos, and use them.

From Python (each name is documented where it is defined)::

    import catdog

    config = catdog.load_config("small", {"train.epochs": 2})
    run = catdog.train(config, "photos/train")        # or catdog.open_run("runs/...")
    run.predict(["my_cat.jpg"])                       # or RGB uint8 arrays
    run.evaluate("photos/validation").accuracy

`import catdog` loads none of these: each loads when first used, so that importing catdog costs no
TensorFlow, OpenCV or NumPy start-up (training and a run's `.model` start Keras when they need it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Each public name and the module that defines it.
_PUBLIC = {
    "load_config": "catdog.api",
    "train": "catdog.api",
    "resume": "catdog.api",
    "open_run": "catdog.api",
    "predict": "catdog.prediction",
    "evaluate": "catdog.evaluation",
    "cache_entries": "catdog.cache_admin",
    "clear_cache": "catdog.cache_admin",
    "Config": "catdog.config",
    "Run": "catdog.runs",
    "TrainResult": "catdog.training",
    "Prediction": "catdog.prediction",
    "EvalReport": "catdog.evaluation",
    "CacheEntry": "catdog.cache_admin",
    "CatdogError": "catdog.errors",
    "ConfigError": "catdog.errors",
    "DataError": "catdog.errors",
    "ImageError": "catdog.errors",
    "RunError": "catdog.errors",
    "TrainingError": "catdog.errors",
    "CacheError": "catdog.errors",
}

# Modules that never import TensorFlow: using them leaves the backend's logging as it is.
_QUIET = {"catdog.errors", "catdog.config"}

# Written out, not built from _PUBLIC, so that linters see the TYPE_CHECKING names used.
__all__ = [
    "__version__",
    "load_config", "train", "resume", "open_run", "predict", "evaluate", "cache_entries", "clear_cache",
    "Config", "Run", "TrainResult", "Prediction", "EvalReport", "CacheEntry",
    "CatdogError", "ConfigError", "DataError", "ImageError", "RunError", "TrainingError", "CacheError",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; tests/test_imports.py keeps it equal to _PUBLIC
    from catdog.api import load_config, open_run, resume, train
    from catdog.cache_admin import CacheEntry, cache_entries, clear_cache
    from catdog.config import Config
    from catdog.errors import CacheError, CatdogError, ConfigError, DataError, ImageError, RunError, TrainingError
    from catdog.evaluation import EvalReport, evaluate
    from catdog.prediction import Prediction, predict
    from catdog.runs import Run
    from catdog.training import TrainResult


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'catdog' has no attribute {name!r}")
    if module not in _QUIET:  # errors and configs start no backend; the rest may
        from catdog.native_logs import quiet_library

        quiet_library()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})

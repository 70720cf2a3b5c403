"""catdog from Python: load a config, train on a photo folder, open a run (then predict and evaluate
with it). `import catdog` offers these names, with `catdog.predict` and `catdog.evaluate`; the CLI's
commands call the same functions.

The library never prints: training reports through the optional `report` (one line at a time) and
`progress` / `batch_progress` ((done, total)) callbacks. Errors are `catdog.CatdogError` subclasses
whose message is one line naming the file, key or value. Keras and TensorFlow are imported inside
the functions that need them (training, a run's `.model`): this module is imported by `catdog`'s
attribute lookup and stays light.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catdog import config as _config
from catdog.config import Config
from catdog.errors import ConfigError, shown
from catdog.runs import Run, load_run

if TYPE_CHECKING:
    from catdog.training import TrainResult

Overrides = Mapping[str, Any] | Sequence[str] | None
Report = Callable[[str], None]
Progress = Callable[[int, int], None]


def load_config(name_or_path: str | Path | None = None, overrides: Overrides = None) -> Config:
    """A config: a built-in one by name (`article`, `small`, `large`, `transfer`), a YAML file, or
    the defaults (None), with overrides applied as `catdog train --set` applies them.

    Args:
        name_or_path: a built-in config's name or a YAML file's path.
        overrides: dotted keys and values, `{"train.epochs": 2, "data.image_size": 64}`, or the
            CLI's strings, `["train.epochs=2"]`.

    Raises:
        ConfigError: no such file or name, or a key, type or value is wrong (the message names it).
    """
    return _config.load_config(name_or_path, override_items(overrides))


def override_items(overrides: Overrides) -> list[str]:
    """`KEY=VALUE` strings from a mapping (values written as JSON, which YAML reads back as they were)
    or a sequence of such strings."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        items = []
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise ConfigError(f"config overrides: keys are dotted names such as train.epochs; "
                                  f"got {shown(repr(key))}")
            items.append(f"{key}={json.dumps(value, default=str)}")
        return items
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(f"config overrides must be a mapping such as {{'train.epochs': 2}} or a list of "
                          f"'key=value' strings; got the single string {shown(repr(overrides))}")
    items = list(overrides)
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"config overrides: each item of a list is a 'key=value' string; got {shown(repr(item))}")
    return items


def train(config: Config | str | Path | None = None, data: str | Path | None = None, out: str | Path | None = None,
          *, report: Report | None = None, progress: Progress | None = None, batch_progress: Progress | None = None,
          callbacks: list | None = None) -> Run:
    """Train on a folder of class sub-folders and return the finished run.

    Args:
        config: a Config (see `load_config`), or a built-in name or YAML file to load as it is.
        data: the photo folder (default the config's `data.dir`).
        out: the run folder to create; it must not hold files (default runs/<time>-<model>/).
        report: receives one-line messages: the device, split sizes, one line per epoch.
        progress: receives (done, total) while the photos are prepared.
        batch_progress: receives (done, total) batches during each epoch.
        callbacks: more Keras callbacks, called after each epoch is checkpointed.

    Returns:
        The run, with `.result` (epochs, best epoch, validation scores, history) set.

    Raises:
        CatdogError: a bad config or data folder, an `out` that holds files, or a training that
            produced no usable model.
    """
    from catdog import training

    resolved = config if isinstance(config, Config) else load_config(config)
    return _opened(training.train(resolved, data, out, report, progress, batch_progress, callbacks))


def resume(run: str | Path | Run, data: str | Path | None = None, *, report: Report | None = None,
           progress: Progress | None = None, batch_progress: Progress | None = None,
           callbacks: list | None = None) -> Run:
    """Continue an interrupted run from its last completed epoch, with its own config.

    Raises:
        RunError: the folder is not an interrupted run, or its photos changed.
    """
    from catdog import training

    path = run.dir if isinstance(run, Run) else run
    return _opened(training.resume(path, data, report, progress, batch_progress, callbacks))


def _opened(result: TrainResult) -> Run:
    run = load_run(result.run_dir)
    run.result = result
    return run


def open_run(path: str | Path | None = None) -> Run:
    """A trained run folder (default: the latest under runs/), ready to predict and evaluate.

    Its config and class names are read now; its Keras model (`.model`) when first needed.

    Raises:
        RunError: no such run, or its model, config or class names are missing or damaged.
    """
    return load_run(path)

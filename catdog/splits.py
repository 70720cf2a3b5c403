"""Splitting a run's photos into train, validation and test: stratified, seeded, recorded with the run.

The way there from a config lives here too: `data_dir` picks the folder and `prepare_folder` brings
its photos into the cache at the config's image size (evaluation uses it on folders it scores).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catdog.cache import Prepared, Progress, prepare
from catdog.config import Config
from catdog.decisions import Decisions
from catdog.decisions import apply as apply_decisions
from catdog.decisions import read as read_decisions
from catdog.errors import ConfigError, DataError, shown
from catdog.folders import Found, discover


def find_photos(config: Config, folder: str | Path, classes: list[str] | None = None,
                decisions: Decisions | None = None) -> Found:
    """The labelled photos of `folder` (see `discover`), with the decisions file of `data.decisions`
    (or `decisions`, already read) applied: the one place photos get their labels.

    Raises:
        DataError: see `discover`. ConfigError: a bad decisions file (see `catdog.decisions`).
    """
    found = discover(folder, classes)
    if decisions is None and config.data.decisions:
        decisions = read_decisions(config.data.decisions)
    return found if decisions is None else apply_decisions(found, decisions, own_classes=classes is None)


def prepare_folder(config: Config, folder: str | Path | Found, classes: list[str] | None = None,
                   progress: Progress | None = None) -> Prepared:
    """Find the images of `folder` (unless already found, see `find_photos`) and bring the cache up
    to date at the config's size and mode.

    Raises:
        DataError: see `discover`; or a class folder none of whose files could be read (a model
            trained without a class's photos would still answer with it).
    """
    found = folder if isinstance(folder, Found) else find_photos(config, folder, classes)
    d = config.data
    prepared = prepare(found, d.image_size, d.resize, d.cache_dir, d.workers, progress)
    refuse_unusable_classes(prepared)
    return prepared


def refuse_unusable_classes(prepared: Prepared) -> None:
    """Refuse a folder in which a class has files but none of them is a usable image.

    Raises:
        DataError: naming the class folder (or flat name) and where the reasons are listed.
    """
    found, counts = prepared.found, prepared.class_counts()
    for index, name in enumerate(found.classes):
        files = found.labels.count(index)
        if files and not counts[name]:
            where = (f"class folder {shown(found.root / name)}" if found.layout == "class folders"
                     else f"{shown(found.root)}: the files named {shown(name)}.<number>")
            raise DataError(f"{where}: none of its {files} files is a usable image (reasons in "
                            f"{shown(prepared.cache_dir / 'skipped.txt')}); add readable photos or remove the class")


def data_dir(config: Config, override: str | Path | None) -> Path:
    """The training folder: `--data` if given, else `data.dir` of the config."""
    folder = override or config.data.dir
    if not folder:
        raise DataError("no data folder given: pass --data DIR or set data.dir in the config")
    return Path(folder)


def check_fractions(validation_split: float, test_split: float) -> None:
    """Refuse split fractions that leave no photos to train on.

    Raises:
        ConfigError: naming both keys, their values and their sum.
    """
    if validation_split + test_split >= 1:
        raise ConfigError(f"data.validation_split ({validation_split:g}) + data.test_split ({test_split:g}) = "
                        f"{validation_split + test_split:g} leaves no photos to train on; together they must stay "
                        f"below 1 (e.g. 0.2 and 0.1)")


def split_indices(labels: np.ndarray, fractions: tuple[float, float], seed: int,
                  classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split into (train, validation, test) index arrays.

    Each class is shuffled with the seed and cut separately, so every split keeps the class balance
    and the same config always gives the same split. `classes` names the labels in errors.

    Raises:
        ConfigError: the fractions sum to 1 or more. DataError: a class has too few photos to split.
    """
    val_frac, test_frac = fractions
    check_fractions(val_frac, test_frac)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        # A non-zero fraction always holds out at least one photo of each class.
        n_test = max(int(round(len(idx) * test_frac)), int(test_frac > 0))
        n_val = max(int(round(len(idx) * val_frac)), int(val_frac > 0))
        if n_val + n_test >= len(idx):
            name = f"class {shown(classes[int(c)]) if classes is not None else int(c)}"
            raise DataError(f"{name} has {len(idx)} usable images: too few to hold out {n_val} for validation "
                            f"and {n_test} for test (data.validation_split {val_frac:g}, data.test_split "
                            f"{test_frac:g}) and still train; add photos or lower the fractions")
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


@dataclass
class Split:
    """Which prepared images train, validate and test a run (positions in each Prepared)."""

    train: Prepared
    train_idx: np.ndarray
    val: Prepared
    val_idx: np.ndarray
    test_idx: np.ndarray  # positions in `train` (test photos come from the training folder)

    def record(self) -> dict:
        """The split as relative paths, saved with the run so evaluation never scores a training photo."""
        def paths(p: Prepared, idx: np.ndarray) -> list[str]:
            return [p.files[i] for i in idx]

        return {
            "root": str(self.train.found.root.resolve()),
            "validation_root": str(self.val.found.root.resolve()),
            "train": paths(self.train, self.train_idx),
            "validation": paths(self.val, self.val_idx),
            "test": paths(self.train, self.test_idx),
        }


def split(config: Config, train: Prepared, val: Prepared | None = None) -> Split:
    """Split `train` by the config's fractions; a separate validation folder replaces the val split."""
    d = config.data
    val_frac = 0.0 if val is not None else d.validation_split
    tr, va, te = split_indices(train.labels, (val_frac, d.test_split), config.seed, train.classes)
    if val is None:
        return Split(train, tr, train, va, te)
    return Split(train, tr, val, np.arange(len(val.files)), te)

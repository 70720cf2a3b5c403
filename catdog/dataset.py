"""Finding labelled images in a folder, splitting them, and feeding batches to Keras.

Keras is imported inside functions, so that importing this module never starts TensorFlow
(training sets devices up first; the CLI's light commands never need it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog.errors import DataError
from catdog.images import is_system_file

if TYPE_CHECKING:
    from catdog.cache import CacheArray

# Kaggle's flat naming: cat.123.jpg, dog.45.jpg.
_FLAT_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)[._]\d+\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class Found:
    """The labelled files of a folder: paths (relative to root), their class index, class names."""

    root: Path
    files: list[str]
    labels: list[int]
    classes: list[str]
    layout: str
    ignored: list[tuple[str, str]] = field(default_factory=list)


def discover(root: str | Path, classes: list[str] | None = None) -> Found:
    """Find images under `root`, laid out as class folders or with Kaggle's flat naming.

    Class folders: every sub-folder of `root` is a class, its files (recursively) are its images.
    Flat: files named `<class>.<number>.<ext>` directly in `root`. With `classes` given (a trained
    model's), the folder's classes must be among them.

    Raises:
        DataError: the folder is missing, empty, has an empty class folder or only one class.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} "
                        f"(expected a folder of class sub-folders, e.g. train/cats, train/dogs)")
    ignored: list[tuple[str, str]] = []
    subdirs = _subfolders(root)
    by_class: dict[str, list[str]] = {}
    if subdirs:
        _refuse_split_folders(root, subdirs)
        layout = "class folders"
        for d in subdirs:
            names = []
            for p in sorted(d.rglob("*")):
                if not p.is_file():
                    if not p.is_dir():  # a FIFO, device or broken link: listed, never opened
                        ignored.append((p.relative_to(root).as_posix(), "not a regular file"))
                    continue
                rel = p.relative_to(root).as_posix()
                if any(is_system_file(Path(part)) for part in p.relative_to(root).parts):
                    ignored.append((rel, "hidden or system file"))
                else:
                    names.append(rel)
            if not names:
                raise DataError(f"class folder {d} holds no files (expected images of class {d.name!r})")
            by_class[d.name] = names
    else:
        layout = "flat names"
        for p in sorted(root.iterdir()):
            if not p.is_file():
                continue
            if is_system_file(p):
                ignored.append((p.name, "hidden or system file"))
                continue
            m = _FLAT_NAME.match(p.name)
            if m is None:
                ignored.append((p.name, "no class in the name (expected e.g. cat.12.jpg)"))
                continue
            by_class.setdefault(m.group(1).lower(), []).append(p.name)
    if not by_class:
        raise DataError(f"no images found in {root} (expected class sub-folders such as cats/ and dogs/, "
                        f"or files named cat.1.jpg, dog.1.jpg)")
    if classes is None:
        classes = sorted(by_class)
        if len(classes) < 2:
            raise DataError(f"only one class found in {root} ({classes[0]}); "
                            f"a classifier needs at least two class folders" + _deeper_hint(root / classes[0]))
    else:
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise DataError(f"{root} has classes the model does not know: {', '.join(unknown)} "
                            f"(model classes: {', '.join(classes)})")
    files, labels = [], []
    for name in sorted(by_class):
        files += by_class[name]
        labels += [classes.index(name)] * len(by_class[name])
    return Found(root, files, labels, list(classes), layout, ignored)


# Folder names that mean a split of a dataset, not a class of photos.
SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _subfolders(folder: Path) -> list[Path]:
    """The sub-folders of `folder` that may be classes (hidden and system folders left out), sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_system_file(p))


def _split_of_classes(folders: list[Path]) -> tuple[Path, list[Path]] | None:
    """The first folder named like a split (train/, validation/) that holds class folders, with them."""
    for d in folders:
        inner = _subfolders(d)
        if d.name.lower() in SPLIT_NAMES and len(inner) >= 2:
            return d, inner
    return None


def _deeper_hint(folder: Path) -> str:
    """Where the class folders may be when `folder` is the only one found: a level or two down."""
    if not folder.is_dir():
        return ""
    inner = _subfolders(folder)
    if (found := _split_of_classes(inner)) is not None:
        return f"; {folder.name}/ holds split folders: pass e.g. --data {found[0]}"
    return f"; did you mean --data {folder}?" if len(inner) >= 2 else ""


def _refuse_split_folders(root: Path, subdirs: list[Path]) -> None:
    """Refuse a folder of splits (train/, validation/, each holding class folders) taken as classes."""
    if (found := _split_of_classes(subdirs)) is not None:
        d, inner = found
        raise DataError(f"{root} holds split folders ({', '.join(p.name for p in subdirs)}), not classes: "
                        f"{d.name}/ holds the class folders {', '.join(p.name for p in inner)}; pass --data {d} "
                        f"(and --set data.validation_dir=... for a validation folder)")


def split_indices(labels: np.ndarray, fractions: tuple[float, float],
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split into (train, validation, test) index arrays.

    Each class is shuffled with the seed and cut separately, so every split keeps the class balance
    and the same config always gives the same split.
    """
    val_frac, test_frac = fractions
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        # A non-zero fraction always holds out at least one photo of each class.
        n_test = max(int(round(len(idx) * test_frac)), int(test_frac > 0))
        n_val = max(int(round(len(idx) * val_frac)), int(val_frac > 0))
        if n_val + n_test >= len(idx):
            raise DataError(f"class {int(c)} has {len(idx)} images: "
                            f"too few to split off validation/test photos and still train")
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def targets(labels: np.ndarray, num_classes: int, sigmoid: bool) -> np.ndarray:
    """Keras targets: one-hot rows for a softmax head, a 0/1 column for a sigmoid head."""
    if sigmoid:
        return labels.astype("float32").reshape(-1, 1)
    return np.eye(num_classes, dtype="float32")[labels]


def cutmix(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CutMix (Yun et al., 2019): paste a box of another photo of the batch into each photo.

    The box covers a fraction 1 - lam of the photo, lam ~ Uniform(0, 1) (Beta(1, 1), as in the
    paper), at a uniform centre, clipped at the borders; each target becomes the mix of the two
    targets by the pixel areas they actually show. Returns new arrays; `x` and `y` are untouched.
    """
    n, height, width = x.shape[:3]
    partner = rng.permutation(n)
    cut = np.sqrt(1.0 - rng.uniform())
    cy, cx = rng.integers(height), rng.integers(width)
    top, bottom = np.clip([cy - round(cut * height / 2), cy + round(cut * height / 2)], 0, height)
    left, right = np.clip([cx - round(cut * width / 2), cx + round(cut * width / 2)], 0, width)
    mixed = x.copy()
    mixed[:, top:bottom, left:right] = x[partner, top:bottom, left:right]
    shown = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, (shown * y + (1.0 - shown) * y[partner]).astype(y.dtype)


def batches(images: np.ndarray | CacheArray, indices: np.ndarray, y: np.ndarray | None, batch_size: int,
            shuffle: bool = False, seed: int = 0, mix: float = 0.0, first_epoch: int = 0):
    """A keras.utils.PyDataset of (uint8 images, targets) read from the cache (or an array).

    Reading batches from the on-disk cache keeps memory flat however many photos there are, and
    works on every Keras backend (no tf.data needed). With `mix` > 0 each batch is cut-mixed
    (`cutmix`) with that probability, drawn from (seed, epoch, batch): the same run repeats.
    `first_epoch` is the epoch the first pass is (a resumed run's), so its order is the same.
    """
    import keras

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            # Two reader threads fetch the next batches while the model trains (pread releases the GIL).
            super().__init__(workers=2, max_queue_size=4)
            self.order = np.asarray(indices)
            self.epoch = first_epoch
            if shuffle:
                self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, i: int):
            # Sorted indices within a batch turn random reads of the cache file into forward reads.
            chunk = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            x = images[chunk]
            if y is None:
                return (x,)
            if mix:
                rng = np.random.default_rng((seed, self.epoch, i))
                if rng.uniform() < mix:
                    return cutmix(x, y[chunk], rng)
            return x, y[chunk]

        def on_epoch_end(self) -> None:
            if shuffle:
                rng = np.random.default_rng((seed, self.epoch))
                self.order = np.asarray(indices)[rng.permutation(len(indices))]
                self.epoch += 1

    return _Batches()

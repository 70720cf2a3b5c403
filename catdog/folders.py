"""Finding the labelled photos in a folder: class sub-folders or Kaggle's flat names. A folder of
splits (train/, validation/) is refused, naming the folder to pass instead."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from catdog.errors import DataError
from catdog.images import is_system_file

if TYPE_CHECKING:
    from catdog.decisions import Applied

# Kaggle's flat naming: cat.123.jpg, dog.45.jpg.
_FLAT_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)[._]\d+\.[A-Za-z0-9]+$")

# The names cameras, phones and apps give photos (IMG_0001.jpg, DSC_1234.jpg, PXL_2023...): in a
# flat folder they would read as a class "img" or "dsc", and train a model on a class nobody meant.
CAMERA_PREFIXES = frozenset({
    "img", "image", "imag", "dsc", "dscn", "dscf", "dcim", "pxl", "mvimg", "p", "pic", "pict", "picture",
    "photo", "gopr", "gp", "gh", "dji", "sam", "wp", "vid", "mov", "screenshot", "scan", "snapshot",
})


@dataclass(frozen=True)
class Found:
    """The labelled files of a folder: paths (relative to root), their class index, class names."""

    root: Path
    files: list[str]
    labels: list[int]
    classes: list[str]
    layout: str
    ignored: list[tuple[str, str]] = field(default_factory=list)
    # What a decisions file (data.decisions) did to these photos; None when there was none.
    decided: Applied | None = None


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
        _refuse_camera_names(root, by_class)
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


def _refuse_camera_names(root: Path, by_class: dict[str, list[str]]) -> None:
    """Refuse a flat folder whose names would make a class of a camera's counter (IMG_0001.jpg)."""
    camera = sorted(c for c in by_class if c in CAMERA_PREFIXES)
    if camera:
        examples = ", ".join(by_class[c][0] for c in camera)
        raise DataError(f"{root}: files named like {examples} are a camera's photos, not <class>.<number>, "
                        f"and would make a class {camera[0]!r}; put each class's photos in a "
                        f"sub-folder of its own (e.g. cats/, dogs/) or name them cat.1.jpg, dog.1.jpg")

"""Leaks found cheaply: the same photo (same decoded pixels) among the training photos and the photos
scored against them, or filed in two classes.

Each photo is hashed from its row in the prepared-image cache (decoded and resized at the run's image
size), so byte-identical files and copies saved again at the same pixels match; two photos that differ
only in detail the resizing loses match too, which is what the model sees anyway. Near-duplicates
(cropped, re-encoded at another quality) are not found here.

A run keeps its training photos' hashes in RUN/pixel_hashes.json, so `evaluate` needs no other folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catdog.cache import Prepared
from catdog.errors import replacing, shown
from catdog.splits import Split

HASHES_FILE = "pixel_hashes.json"
LEAKS_FILE = "leaks.txt"
# Rows hashed per read: one pread of a few MB, whatever the image size.
CHUNK = 256


def pixel_hashes(prepared: Prepared, idx: np.ndarray | None = None) -> list[str]:
    """A 128-bit BLAKE2b hex digest of each usable photo's cached pixels (those at positions `idx`)."""
    rows = prepared.rows if idx is None else prepared.rows[idx]
    out: list[str] = []
    for start in range(0, len(rows), CHUNK):
        for pixels in prepared.images[rows[start:start + CHUNK]]:
            out.append(hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest())
    return out


@dataclass
class Leaks:
    """Photos scored that are also training photos, and photos filed in two classes (same pixels)."""

    # (photo scored, training photo with the same pixels)
    shared: list[tuple[str, str]] = field(default_factory=list)
    # (photo, its class, photo with the same pixels, the other class)
    two_classes: list[tuple[str, str, str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.shared or self.two_classes)

    def lines(self, scored: str, listed: Path) -> list[str]:
        """One warning line per kind of leak found, naming an example and where all are listed."""
        out = []
        if self.shared:
            a, b = self.shared[0]
            n = len(self.shared)
            out.append(f"warning: {n} of the {scored} {'is a training photo' if n == 1 else 'are training photos'} "
                       f"too (same pixels), "
                       f"e.g. {shown(a)} = {shown(b)}; list in {shown(listed)}")
        if self.two_classes:
            a, ca, b, cb = self.two_classes[0]
            n = len(self.two_classes)
            out.append(f"warning: {n} {'photo is' if n == 1 else 'photos are'} filed in two classes (same pixels), "
                       f"e.g. {shown(a)} ({shown(ca)}) = {shown(b)} ({shown(cb)}); list in {shown(listed)}")
        return out

    def to_dict(self, listed: Path | None) -> dict:
        return {"checked": True, "leaky": bool(self), "training_photos": len(self.shared),
                "in_two_classes": len(self.two_classes), "list": str(listed) if self else None}

    def write(self, path: Path) -> Path:
        """The leaks, one "photo = photo" line each, written atomically."""
        text = "".join(f"scored {shown(a, 10_000)} = training {shown(b, 10_000)}\n" for a, b in self.shared)
        text += "".join(f"{shown(ca)} {shown(a, 10_000)} = {shown(cb)} {shown(b, 10_000)}\n"
                        for a, ca, b, cb in self.two_classes)
        tmp = path.with_name(path.name + ".tmp")
        with replacing(path, tmp):
            tmp.write_text(text, encoding="utf-8")
        return path


def find(scored: list[tuple[str, str, str]], training: dict[str, str],
         groups: list[list[tuple[str, str, str]]]) -> Leaks:
    """Leaks among photos given as (name, class, hash).

    Args:
        scored: the photos scored (validation, test or evaluated); each one whose hash is in
            `training` (hash -> training photo's name) is a shared photo.
        groups: sets of photos (a whole folder each) in which one hash under two classes is a photo
            filed in two classes.
    """
    leaks = Leaks(shared=[(name, training[h]) for name, _c, h in scored if h in training])
    for group in groups:
        first: dict[str, tuple[str, str]] = {}
        for name, cls, h in group:
            seen = first.setdefault(h, (name, cls))
            if seen[1] != cls:
                leaks.two_classes.append((seen[0], seen[1], name, cls))
    return leaks


def named(prepared: Prepared, hashes: list[str], idx: np.ndarray | None = None) -> list[tuple[str, str, str]]:
    """(name, class, hash) for the photos at positions `idx` (default all) of `prepared`, each named
    by its path from the folder's parent (e.g. validation/cats/cat.1.jpg), so that photos of two
    folders are told apart."""
    positions = range(len(prepared.files)) if idx is None else idx
    prefix = f"{prepared.found.root.resolve().name}/"
    return [(prefix + prepared.files[i], prepared.classes[prepared.labels[i]], h)
            for i, h in zip(positions, hashes, strict=True)]


def check_split(sp: Split, run_dir: Path, say: Callable[[str], None]) -> Leaks:
    """At training: record the training photos' hashes in the run, and warn about validation or test
    photos that are training photos, and about photos filed in two classes (RUN/leaks.txt lists them)."""
    train_all = pixel_hashes(sp.train)
    everything = named(sp.train, train_all)
    training: dict[str, str] = {}
    for i in sp.train_idx:
        training.setdefault(train_all[i], everything[i][0])
    scored = [everything[i] for i in sp.test_idx]
    groups = [everything]
    if sp.val is sp.train:
        scored += [everything[i] for i in sp.val_idx]
    else:
        val_named = named(sp.val, pixel_hashes(sp.val, sp.val_idx), sp.val_idx)
        scored += val_named
        groups.append(val_named)
    leaks = find(scored, training, groups)
    size = list(sp.train.images.shape[1:3])
    write_hashes(run_dir / HASHES_FILE, training, size)
    listed = run_dir / LEAKS_FILE
    if leaks:
        leaks.write(listed)
    else:
        listed.unlink(missing_ok=True)  # a resumed run found none now
    for line in leaks.lines("validation and test photos", listed):
        say(line)
    return leaks


def write_hashes(path: Path, training: dict[str, str], size: list[int]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with replacing(path, tmp):
        tmp.write_text(json.dumps({"image_size": size, "training": training}), encoding="utf-8")


def read_hashes(run_dir: Path) -> dict[str, str] | None:
    """The run's training photos by pixel hash, or None for a run trained before they were recorded."""
    try:
        return dict(json.loads((run_dir / HASHES_FILE).read_text(encoding="utf-8"))["training"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

"""Copy a class-folder photo folder with a seeded share of its labels flipped, for measuring how
many of them `catdog review` finds (docs/review.md).

    python scripts/flip_labels.py data/cats_and_dogs_filtered/train /tmp/flipped --share 0.05

DEST must not exist and must lie outside this repository. Photos are hard-linked into DEST (copied
where linking fails); a flipped photo goes under another class (drawn with the seed), with its own
file name. The original folder is only read. The flipped photos are listed in DEST-flipped.csv
(beside DEST, not in it): path in DEST, given class, true class.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def place(src: Path, dest: Path) -> None:
    """Hard-link `src` at `dest` (a copy where the file system cannot link); never replaces a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        if dest.exists():
            raise
        shutil.copy2(src, dest)


def new_folder(dest: Path) -> None:
    """Refuse a DEST that exists or lies inside the repository."""
    where = dest.resolve()
    if where.exists():
        sys.exit(f"{dest} exists; pick a new folder")
    if where == REPO or REPO in where.parents:
        sys.exit(f"{dest} is inside the repository; pick a folder outside it (e.g. under /tmp)")


def flip(src: Path, dest: Path, share: float, seed: int) -> list[tuple[str, str, str]]:
    """Link every photo of `src` into `dest`, a `share` of them under another class; returns
    (path in dest, given class, true class) for the flipped ones."""
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    if len(classes) < 2:
        sys.exit(f"{src}: expected class sub-folders (at least two); found {len(classes)}")
    photos = [(c, p) for c in classes for p in sorted((src / c).rglob("*")) if p.is_file()]
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(photos), size=round(share * len(photos)), replace=False).tolist())
    listed = []
    for i, (cls, path) in enumerate(photos):
        rel = path.relative_to(src / cls)
        if i in flipped:
            given = str(rng.choice([c for c in classes if c != cls]))
            place(path, dest / given / rel)
            listed.append(((Path(given) / rel).as_posix(), given, cls))
        else:
            place(path, dest / cls / rel)
    return listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="photo folder of class sub-folders (only read)")
    parser.add_argument("dest", type=Path, help="new folder to create, outside the repository")
    parser.add_argument("--share", type=float, default=0.05, help="share of photos to flip (default 0.05)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    new_folder(args.dest)
    listed = flip(args.src, args.dest, args.share, args.seed)
    out = args.dest.with_name(args.dest.name + "-flipped.csv")
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "given", "true"])
        writer.writerows(listed)
    print(f"{args.dest}: {len(listed)} labels flipped, listed in {out}")


if __name__ == "__main__":
    main()

"""Plant copies of photos in a new folder, for measuring how many `catdog review` finds
(docs/review.md): for each of `--count` photos per kind, one copy that is

- exact:  the same pixels, saved again as PNG (another file, another format),
- half:   resized to half its width and height (JPEG quality 90),
- q60:    recompressed at JPEG quality 60,
- crop5:  cropped by 5% of its width and height (off the top left; JPEG quality 90).

    python scripts/plant_duplicates.py photos/train /tmp/planted --also photos/validation --count 10

DEST must not exist and must lie outside this repository. With --also, that folder's photos are
hard-linked into DEST first (copied where linking fails), so the copies sit among real photos of
another split. SRC and --also are only read. The planted pairs are listed in DEST-planted.csv
(beside DEST): kind, source (relative to SRC), copy (relative to DEST).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flip_labels import new_folder, place  # noqa: E402

KINDS = ("exact", "half", "q60", "crop5")


def planted(im: Image.Image, kind: str) -> tuple[Image.Image, dict]:
    """The copy of `im` of this kind, and the options to save it with."""
    w, h = im.size
    if kind == "exact":
        return im, {"format": "PNG"}
    if kind == "half":
        return im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), {"format": "JPEG", "quality": 90}
    if kind == "q60":
        return im, {"format": "JPEG", "quality": 60}
    return im.crop((round(w * 0.05), round(h * 0.05), w, h)), {"format": "JPEG", "quality": 90}


def plant(src: Path, dest: Path, count: int, seed: int) -> list[tuple[str, str, str]]:
    """Write `count` copies of each kind of distinct photos of `src` into `dest`/<class>/."""
    photos = sorted(p for p in src.rglob("*") if p.is_file() and p.parent != src)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(photos), size=count * len(KINDS), replace=False)
    rows = []
    for n, i in enumerate(chosen):
        kind, source = KINDS[n % len(KINDS)], photos[int(i)]
        rel = source.relative_to(src)
        with Image.open(source) as opened:
            im = opened.convert("RGB")
        copy, options = planted(im, kind)
        ext = ".png" if options["format"] == "PNG" else ".jpg"
        out = dest / rel.parent / f"planted-{kind}-{rel.stem}{ext}"
        out.parent.mkdir(parents=True, exist_ok=True)
        copy.save(out, **options)
        rows.append((kind, rel.as_posix(), out.relative_to(dest).as_posix()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="photo folder of class sub-folders the copies are made of (only read)")
    parser.add_argument("dest", type=Path, help="new folder to create, outside the repository")
    parser.add_argument("--also", type=Path, help="photo folder linked into DEST before the copies are planted")
    parser.add_argument("--count", type=int, default=10, help="copies of each kind (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    new_folder(args.dest)
    if args.also:
        for p in sorted(args.also.rglob("*")):
            if p.is_file():
                place(p, args.dest / p.relative_to(args.also))
    rows = plant(args.src, args.dest, args.count, args.seed)
    out = args.dest.with_name(args.dest.name + "-planted.csv")
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "source", "copy"])
        writer.writerows(rows)
    print(f"{args.dest}: {len(rows)} copies planted, listed in {out}")


if __name__ == "__main__":
    main()

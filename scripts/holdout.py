#!/usr/bin/env python
"""Split a photo folder into `fit/` and `holdout/` folders of links, to choose recipes on.

Issue 24's protocol: a recipe is chosen on photos held out from the training photos, never on
the folder it is finally scored on. This makes that hold-out once, the same every time: from each
class sub-folder of --src a seeded fifth (--fraction) goes to OUT/holdout/<class>/, the rest to
OUT/fit/<class>/, as symbolic links to the photos (nothing is copied). Then, for example:

  python scripts/holdout.py --src data/cats_and_dogs_filtered/train --out holdout
  python scripts/bench_accuracy.py -c small --train holdout/fit --test holdout/holdout

OUT must not exist yet (an earlier split is never replaced).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, type=Path, help="folder of class sub-folders")
    parser.add_argument("--out", required=True, type=Path, help="new folder for fit/ and holdout/")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of each class held out (0.2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    classes = sorted(p for p in args.src.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if args.src.is_dir() else []
    if not classes:
        print(f"error: --src {args.src}: expected a folder of class sub-folders", file=sys.stderr)
        return 1
    if args.out.exists():
        print(f"error: --out {args.out} exists; pick a new folder", file=sys.stderr)
        return 1
    if not 0 < args.fraction < 1:
        print(f"error: --fraction must be between 0 and 1, got {args.fraction}", file=sys.stderr)
        return 1
    for i, folder in enumerate(classes):
        photos = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        rng = np.random.default_rng((args.seed, i))
        held = set(rng.permutation(len(photos))[:round(len(photos) * args.fraction)].tolist())
        for j, photo in enumerate(photos):
            target = args.out / ("holdout" if j in held else "fit") / folder.name / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(photo.resolve())
        print(f"{folder.name}: {len(photos) - len(held)} fit, {len(held)} held out")
    return 0


if __name__ == "__main__":
    sys.exit(main())

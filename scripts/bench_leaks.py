#!/usr/bin/env python
"""What the leak check (catdog.leaks) costs a training run: hashing every photo's cached pixels
(docs/data.md, "Leaks caught during training").

Prepares FOLDER at the default image size (decoding it into the cache unless it is there already;
not timed), then times `pixel_hashes` over all its photos, the best of `--repeat`.

    python scripts/bench_leaks.py data/cats_and_dogs_filtered/train --repeat 3
"""

from __future__ import annotations

import argparse
import time

from catdog.config import load_config
from catdog.leaks import pixel_hashes
from catdog.splits import prepare_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. data.image_size=160")
    args = parser.parse_args()
    config = load_config(None, args.set)
    prepared = prepare_folder(config, args.folder)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        pixel_hashes(prepared)
        times.append(time.perf_counter() - start)
    size = prepared.images.row_bytes
    print(f"{len(prepared.files)} photos at {config.data.image_size[0]}x{config.data.image_size[1]} "
          f"({size * len(prepared.files) / 1e6:.0f} MB of pixels): hashed in {min(times):.3f} s "
          f"(best of {args.repeat}; {1e3 * min(times) / len(prepared.files):.3f} ms a photo)")


if __name__ == "__main__":
    main()

"""How many damaged JPEGs does catdog's decoder refuse? (docs/reliability.md)

Each photo is copied with `--bytes` random bytes overwritten at the middle of the file, then
decoded with catdog.images.load_image at the model's size. A photo is "refused" when load_image
raises ImageError; a decoded one is compared with the undamaged photo decoded the same way, and
counted "changed" when its mean absolute pixel difference exceeds `--changed` levels (out of 255).

    python scripts/measure_decoder.py /path/to/photos --count 100 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from catdog.errors import ImageError
from catdog.images import load_image


def damage(data: bytes, nbytes: int, rng: np.random.Generator) -> bytes:
    """`data` with `nbytes` random bytes written over its middle."""
    start = len(data) // 2 - nbytes // 2
    return data[:start] + rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes() + data[start + nbytes:]


def measure(photos: list[Path], nbytes: int, seed: int, size: int, changed: float) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    counts = {"photos": 0, "refused": 0, "decoded_changed": 0, "decoded_same": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for photo in photos:
            clean = load_image(photo, (size, size))
            path = Path(tmp) / photo.name
            path.write_bytes(damage(photo.read_bytes(), nbytes, rng))
            counts["photos"] += 1
            try:
                pixels = load_image(path, (size, size))
            except ImageError:
                counts["refused"] += 1
                continue
            diff = np.abs(pixels.astype(np.int16) - clean.astype(np.int16)).mean()
            counts["decoded_changed" if diff > changed else "decoded_same"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="photos (searched recursively for *.jpg)")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--bytes", type=int, default=200, dest="nbytes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--size", type=int, default=160, help="decode size (the shipped configs use 160)")
    parser.add_argument("--changed", type=float, default=1.0, help="mean |difference| that counts as changed")
    args = parser.parse_args()
    photos = sorted(args.folder.rglob("*.jpg"))[: args.count]
    print(f"{len(photos)} photos from {args.folder}, {args.nbytes} random bytes over the middle, decoded at "
          f"{args.size}x{args.size}")
    for seed in args.seeds:
        c = measure(photos, args.nbytes, seed, args.size, args.changed)
        print(f"seed {seed}: refused {c['refused']}/{c['photos']}; decoded {c['decoded_changed'] + c['decoded_same']} "
              f"({c['decoded_changed']} visibly changed: mean |diff| > {args.changed}, "
              f"{c['decoded_same']} unchanged)")


if __name__ == "__main__":
    main()

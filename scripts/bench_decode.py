#!/usr/bin/env python
"""What decoding JPEGs only at Pillow's draft scales costs (docs/speed.md, "DCT scaling").

catdog decodes a JPEG at 1/2, 1/4 or 1/8 scale when the result is still at least the size it
resizes to: the scales Pillow's `Image.draft` uses, so a program with Pillow alone gets the very
same pixels (docs/serving.md). Before, it took libjpeg-turbo's smallest n/8 scale (5/8, 3/8 too)
that reduced by at least 1.5. This times both ways, decode plus catdog's resize, in process CPU
time per photo, interleaved, best of `--rounds`, on the photos as they are and upscaled.

    python scripts/bench_decode.py data/cats_and_dogs_filtered/train --count 200 --sizes 128 160 224 300
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from catdog.images import _fit
from catdog.jpeg import decode_jpeg_strictly, draft_scale


def previous_rule(data: bytes, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, fastdct=False, fastupsample=False,
                                 min_width=target[0], min_height=target[1], min_factor=1.5)
    return _fit(rgb, target, "squash")


def draft_rule(data: bytes, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    rgb = decode_jpeg_strictly(data, size, draft_scale(size, target))
    assert rgb is not None
    return _fit(rgb, target, "squash")


def cpu_ms(way, photos: list[tuple[bytes, tuple[int, int]]], target: tuple[int, int]) -> float:
    start = time.process_time()
    for data, size in photos:
        way(data, size, target)
    return (time.process_time() - start) / len(photos) * 1000


def upscaled(data: bytes, factor: float) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        big = im.convert("RGB").resize((round(im.width * factor), round(im.height * factor)),
                                       Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, "JPEG", quality=90)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="photos (searched recursively for *.jpg)")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224, 300])
    ap.add_argument("--large", type=float, default=3.0, help="upscale factor of the large set (its first 30 photos)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    files = sorted(args.folder.rglob("*.jpg"))[: args.count]
    sets = {"photos": [p.read_bytes() for p in files]}
    sets[f"x{args.large:g}"] = [upscaled(d, args.large) for d in sets["photos"][:30]]
    print("| photos | size | previous rule ms | draft rule ms | ratio | photos at another scale |")
    print("|---|---|---|---|---|---|")
    for name, datas in sets.items():
        photos = [(d, Image.open(io.BytesIO(d)).size) for d in datas]
        for side in args.sizes:
            target = (side, side)
            best = {"previous": float("inf"), "draft": float("inf")}
            for _ in range(args.rounds):  # interleaved: a busy minute on a shared machine hits both
                best["previous"] = min(best["previous"], cpu_ms(previous_rule, photos, target))
                best["draft"] = min(best["draft"], cpu_ms(draft_rule, photos, target))
            moved = sum(simplejpeg.decode_jpeg_header(d, min_width=side, min_height=side, min_factor=1.5)[:2][::-1]
                        != (-(-s[0] // draft_scale(s, target)), -(-s[1] // draft_scale(s, target)))
                        for d, s in photos)
            print(f"| {name} ({len(photos)}, e.g. {photos[0][1][0]}x{photos[0][1][1]}) | {side} | "
                  f"{best['previous']:.2f} | {best['draft']:.2f} | {best['draft'] / best['previous']:.2f} | "
                  f"{moved} |")


if __name__ == "__main__":
    main()

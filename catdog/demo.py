"""A synthetic two-class photo set, drawn on the spot, so catdog runs with no data and no network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Two classes a one-layer CNN can tell apart in a couple of epochs: round blobs vs. stripes.
CLASSES = ("circles", "stripes")


def draw_image(kind: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One synthetic photo: a coloured disc, or coloured stripes, on a noisy background."""
    noise = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    im = Image.fromarray(noise)
    draw = ImageDraw.Draw(im)
    colour = tuple(int(c) for c in rng.integers(120, 256, 3))
    if kind == "circles":
        r = int(rng.integers(size // 6, size // 3))
        cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        step = int(rng.integers(6, 14))
        width = max(2, step // 2)
        offset = int(rng.integers(0, step))
        for y in range(offset, size, step):
            draw.rectangle((0, y, size, y + width - 1), fill=colour)
    return im


def make_dataset(root: str | Path, per_class: int = 120, size: int = 64, seed: int = 0) -> Path:
    """Write `per_class` synthetic JPEGs per class under root/<class>/ and return root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_image(kind, rng, size).save(folder / f"{kind}_{i:03d}.jpg", quality=90)
    return root

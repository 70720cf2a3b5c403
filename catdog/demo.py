"""A synthetic two-class photo set, drawn on the spot, so catdog runs with no data and no network."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from catdog.config import load_config
from catdog.evaluation import evaluate
from catdog.prediction import predict
from catdog.runs import load_run
from catdog.show import show
from catdog.summary import summarize
from catdog.training import train

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


def run_demo(root: str | Path, epochs: int = 4, say: Callable[[str], None] = lambda _m: None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """The whole path on a synthetic set: draw, train, evaluate, predict, summarise, show.

    Every step reports through `say`; returns the run folder.
    """

    root = Path(root)
    say(f"1/6 drawing a SYNTHETIC image set (not photos): {', '.join(CLASSES)}, 120 each, in {root / 'images'}")
    images = make_dataset(root / "images")
    config = load_config(None, ["data.image_size=64", f"train.epochs={epochs}", "train.batch_size=32",
                                f"data.cache_dir={root / 'cache'}", "data.test_split=0.2", "data.validation_split=0.2"])
    say("2/6 training the article's CNN (10 filters 5x5, 2x2 max pool, dense softmax) at 64x64")
    result = train(config, images, root / "run", report=lambda m: say("    " + m), progress=progress)
    say("    " + result.line())
    say("3/6 evaluating on the held-out test split")
    say(evaluate(result.run_dir).table())
    say("4/6 predicting two newly drawn images the model has never seen")
    fresh = make_dataset(root / "new", per_class=1, seed=1)
    for p in predict([fresh], result.run_dir):
        say(f"    {p.path.name if p.path else ''}: {p.label} ({p.probability:.3f})")
    say("5/6 the model, layer by layer")
    say(summarize(load_run(result.run_dir).model).table())
    say("6/6 what the network sees in one new image (catdog show)")
    shown = show(fresh / CLASSES[1] / f"{CLASSES[1]}_000.jpg", result.run_dir)
    for path in shown.files:
        say(f"    wrote {path}")
    say(f"\ndone. Everything is in {root}; try: catdog predict --run {result.run_dir} {images / CLASSES[0]}")
    return result.run_dir

"""Test-time augmentation beyond the mirror: accuracy and cost per photo of each set of views.

For each trained run, every photo is prepared as `catdog evaluate` prepares it (the cache at the
run's image size, its decisions file applied, unreadable files skipped) and answered under each view
(the photo, its mirror, a zoom into its centre, shifts); a set of views averages their
probabilities. Views are chosen on the photos `catdog evaluate` scores without --data (the run's
held-out split, never trained on) and scored on --test; the time is Keras's predict per photo and
view on this CPU, decoding left out. One Markdown row per run and set of views.

    python scripts/bench_tta.py --run runs/A --run runs/B --test data/cats_and_dogs_filtered/validation
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SHIFT = 0.05  # of the side: 8 pixels at 160x160, inside the training's translation of 0.1
ZOOM = 0.875  # the centre 87.5% scaled back up, inside the training's zoom of 0.2

# Each set of views: a name and the views it averages.
SETS = {
    "photo": ["photo"],
    "+ mirror (catdog's --tta)": ["photo", "mirror"],
    "+ zoom, zoom mirror": ["photo", "mirror", "zoom", "zoom-mirror"],
    "+ 4 shifts": ["photo", "mirror", "left", "right", "up", "down"],
    "all 8": ["photo", "mirror", "zoom", "zoom-mirror", "left", "right", "up", "down"],
}


def view(batch: np.ndarray, name: str) -> np.ndarray:
    """`batch` (N, H, W, 3) under one view; the same size out."""
    import tensorflow as tf

    _, h, w, _ = batch.shape
    if name == "photo":
        return batch
    if name == "mirror":
        return batch[:, :, ::-1]
    if name.startswith("zoom"):
        ch, cw = round(h * ZOOM), round(w * ZOOM)
        top, left = (h - ch) // 2, (w - cw) // 2
        out = tf.image.resize(batch[:, top:top + ch, left:left + cw], (h, w)).numpy()
        return out[:, :, ::-1] if name.endswith("mirror") else out
    # The way the content moves; the edge it uncovers is a reflection of the photo.
    dy, dx = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[name]
    py, px = round(h * SHIFT), round(w * SHIFT)
    padded = np.pad(batch, ((0, 0), (py, py), (px, px), (0, 0)), mode="reflect")
    top, left = py - dy * py, px - dx * px
    return padded[:, top:top + h, left:left + w]


def scored_photos(run, test: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"held_out": (pixels, labels), "test": (pixels, labels)} of a loaded run, as `catdog evaluate`
    scores them without and with `--data test`."""
    from catdog.evaluation import held_out
    from catdog.runs import run_decisions
    from catdog.splits import prepare_folder

    config = run_decisions(run.dir, run.config)
    held, idx, _ = held_out(run, config)
    tested = prepare_folder(config, test, classes=run.classes)
    return {"held_out": (held.images[held.rows[idx]].astype("float32"), held.labels[idx]),
            "test": (tested.images[tested.rows].astype("float32"), tested.labels)}


def score(model, pixels: np.ndarray, labels: np.ndarray) -> tuple[dict[str, float], float]:
    """(accuracy of each set of views, seconds of predict per photo and view)."""
    probabilities, seconds = {}, 0.0
    for name in {v for views in SETS.values() for v in views}:
        batch = view(pixels, name)
        start = time.perf_counter()
        probabilities[name] = np.asarray(model.predict(batch, batch_size=64, verbose=0), dtype="float64")
        seconds += time.perf_counter() - start
    per_view = seconds / (len(probabilities) * len(pixels))
    accuracy = {}
    for label, views in SETS.items():
        mean = np.mean([probabilities[v] for v in views], axis=0)
        accuracy[label] = float(np.mean(mean.argmax(1) == labels))
    return accuracy, per_view


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="a trained run folder (repeat for more)")
    parser.add_argument("--test", required=True, help="class folders of photos to score the views on")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()

    from catdog.runs import load_run

    rows = []
    print("| run | set of views | passes | held-out accuracy | test accuracy | ms per photo |")
    print("|---|---|---|---|---|---|")
    for path in args.run:
        run = load_run(path)
        photos = scored_photos(run, args.test)
        held, per_view = score(run.model, *photos["held_out"])
        test, _ = score(run.model, *photos["test"])
        for label, views in SETS.items():
            row = {"run": run.dir.name, "views": label, "passes": len(views), "held_out": held[label],
                   "held_out_photos": len(photos["held_out"][1]), "test": test[label],
                   "test_photos": len(photos["test"][1]), "ms_per_photo": 1000 * per_view * len(views)}
            rows.append(row)
            print(f"| {run.dir.name} | {label} | {len(views)} | {100 * held[label]:.1f}% | {100 * test[label]:.1f}% "
                  f"| {row['ms_per_photo']:.1f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

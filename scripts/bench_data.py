#!/usr/bin/env python
"""Load/prepare throughput, epoch time and peak memory: the article's recipe, plain Keras, catdog.

Each way runs in its own process (so its peak resident memory is its own) on the same photo
folder, the same model (the article's) and the same 70/30 split:

  article  decode every photo one by one into a list, resize each, stack into one NumPy array,
           then model.fit on the array (the 2017 article's code, with Pillow in place of the
           long-gone scipy.misc.imread and cv2.resize)
  keras    keras.utils.image_dataset_from_directory with prefetch (decodes JPEGs every epoch)
  catdog   catdog's prepare into a fresh cache, then training from that cache
  compute  no input at all: the same fit on one constant batch repeated, plain Keras at --batch;
           no pipeline can make an epoch faster than this (it shows whether epochs are
           bound by the input or by the model's arithmetic)

Usage:
  python scripts/bench_data.py data/cats_and_dogs_filtered/train [--size 300] [--epochs 3]
  python scripts/bench_data.py DIR --only catdog     # e.g. the 25,000-photo scale check
  python scripts/bench_data.py --make-big 25000 data/cats_and_dogs_filtered/train data/big
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SEED = 42


def model_and_callback(size: int, precision: str = "float32"):
    import keras

    from catdog.config import load_config
    from catdog.devices import dtype_policy
    from catdog.models import build_model

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "article.yaml",
                         [f"data.image_size={size}"])
    with dtype_policy(precision):
        model = build_model(config, 2)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return model, EpochTimes()


def class_files(root: Path) -> list[tuple[Path, int]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir()) if f.is_file()]


def run_article(root: Path, size: int, epochs: int, batch: int) -> dict:
    import numpy as np
    from PIL import Image

    files = class_files(root)
    start = time.perf_counter()
    images, labels = [], []
    for path, label in files:  # the article: imread every photo at full size into a list ...
        images.append(np.asarray(Image.open(path).convert("RGB")))
        labels.append(label)
    for i in range(len(images)):  # ... then resize each one ...
        images[i] = np.asarray(Image.fromarray(images[i]).resize((size, size), Image.BILINEAR))
    x = np.array(images)  # ... and stack them into one array
    load = time.perf_counter() - start
    y = np.eye(2, dtype="float32")[labels]
    # Keras's validation_split takes the last 30%, which would be all dogs: shuffle once first.
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    model, cb = model_and_callback(size)
    model.fit(x, y, epochs=epochs, batch_size=batch, validation_split=0.3, callbacks=[cb], verbose=0)
    return {"images": len(x), "load_s": load, "epochs_s": cb.times}


def run_keras(root: Path, size: int, epochs: int, batch: int) -> dict:
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    train, val = keras.utils.image_dataset_from_directory(
        root, label_mode="categorical", image_size=(size, size), batch_size=batch,
        validation_split=0.3, subset="both", seed=SEED)
    load = time.perf_counter() - start  # lists files only: it decodes JPEGs every epoch
    count = len(train.file_paths) + len(val.file_paths)
    train, val = train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)
    model, cb = model_and_callback(size)
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[cb], verbose=0)
    return {"images": count, "load_s": load, "epochs_s": cb.times}


def run_compute(root: Path, size: int, epochs: int, batch: int) -> dict:
    """The floor for any input pipeline: the same fit on one constant batch, repeated."""
    import numpy as np
    import tensorflow as tf

    count = len(class_files(root))
    n_val = int(count * 0.3)
    rng = np.random.default_rng(SEED)
    x = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
    y = tf.constant(np.eye(2, dtype="float32")[rng.integers(0, 2, batch)])
    one = tf.data.Dataset.from_tensors((x, y))
    train = one.repeat(-(-(count - n_val) // batch))
    val = one.repeat(-(-n_val // batch))
    model, cb = model_and_callback(size)
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[cb], verbose=0)
    return {"images": count, "load_s": float("nan"), "epochs_s": cb.times}


def run_catdog(root: Path, size: int, epochs: int, batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="catdog-bench-cache-") as cache:
        return _run_catdog(root, size, epochs, batch, cache)


def _run_catdog(root: Path, size: int, epochs: int, batch: int, cache: str) -> dict:
    from catdog.batches import batches
    from catdog.cache import prepare
    from catdog.config import load_config
    from catdog.devices import resolve_precision
    from catdog.folders import discover
    from catdog.optimizers import make_optimizer, micro_batch
    from catdog.splits import split

    start = time.perf_counter()
    prepared = prepare(discover(root), (size, size), cache_root=cache)
    load = time.perf_counter() - start
    config = load_config(None, [f"data.image_size={size}", f"seed={SEED}"])
    sp = split(config, prepared)
    y_rows = prepared.row_targets(sigmoid=False)
    # catdog's own training step: batches of `batch` computed in micro-batches (train.micro_batch).
    config = load_config(None, [f"data.image_size={size}", f"seed={SEED}", f"train.batch_size={batch}"])
    micro = micro_batch(config)
    train = batches(prepared.images, prepared.rows[sp.train_idx], y_rows, micro, shuffle=True, seed=SEED)
    val = batches(prepared.images, prepared.rows[sp.val_idx], y_rows, micro)
    # catdog's precision setting ("auto": float32 on a CPU, the GPU's half precision on a GPU).
    precision = resolve_precision(config.train.precision)
    model, cb = model_and_callback(size, precision)
    model.compile(optimizer=make_optimizer(config.train, config.train.learning_rate, batch // micro),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=epochs, callbacks=[cb], verbose=0)
    return {"images": len(prepared.files), "load_s": load, "epochs_s": cb.times, "precision": precision}


WAYS = {"article": run_article, "keras": run_keras, "catdog": run_catdog, "compute": run_compute}


def child(way: str, root: str, size: int, epochs: int, batch: int) -> None:
    result = WAYS[way](Path(root), size, epochs, batch)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def measure(way: str, root: str, size: int, epochs: int, batch: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", way, root, "--size", str(size), "--epochs", str(epochs),
                           "--batch", str(batch)],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{way} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def make_big(count: int, source: Path, target: Path) -> None:
    """A big class-folder dataset of symlinks to `source`'s photos under new names (no copies)."""
    files = class_files(source)
    classes = sorted(p.name for p in source.iterdir() if p.is_dir())
    for c in classes:
        (target / c).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path, label = files[i % len(files)]
        link = target / classes[label] / f"{i:06d}{path.suffix}"
        if not link.exists():
            link.symlink_to(path.resolve())
    print(f"{count} links in {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?")
    ap.add_argument("extra", nargs="*")
    ap.add_argument("--size", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="batch size (the article's: 128)")
    ap.add_argument("--only", choices=sorted(WAYS), action="append")
    ap.add_argument("--rounds", type=int, default=2,
                    help="run every way this many times, interleaved, and keep each way's fastest epoch "
                         "and load (other tenants of a shared machine slow whole minutes down)")
    ap.add_argument("--child")
    ap.add_argument("--make-big", type=int)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.root, args.size, args.epochs, args.batch)
    if args.make_big:
        return make_big(args.make_big, Path(args.root), Path(args.extra[0]))
    results: dict[str, dict] = {}
    for round_ in range(1, args.rounds + 1):
        for way in args.only or ["article", "keras", "catdog", "compute"]:
            print(f"round {round_}/{args.rounds}: running {way} ...", file=sys.stderr, flush=True)
            r = measure(way, args.root, args.size, args.epochs, args.batch)
            later = r["epochs_s"][1:] or r["epochs_s"]
            r["epoch_s"] = min(later)
            print(f"  epochs {' '.join(f'{t:.1f}' for t in r['epochs_s'])} s, load {r['load_s']:.1f} s, "
                  f"peak {r['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
            best = results.setdefault(way, r)
            best["epoch_s"] = min(best["epoch_s"], r["epoch_s"])
            best["load_s"] = min(best["load_s"], r["load_s"])
            best["peak_rss_mb"] = max(best["peak_rss_mb"], r["peak_rss_mb"])
    print(f"\n{args.root}, {args.size}x{args.size}, article model, batch {args.batch}, {args.epochs} epochs; "
          f"{os.cpu_count()} cores; best of {args.rounds} round(s)\n")
    print("| way | images | load/prepare img/s | fastest epoch s (after 1st) | peak RSS MB |")
    print("|---|---|---|---|---|")
    for way, r in results.items():
        r["rate"] = r["images"] / r["load_s"] if way not in ("keras", "compute") else float("nan")
        rate = {"keras": "lazy (decodes each epoch)",
                "compute": "none (one constant batch)"}.get(way, f"{r['rate']:.0f}")
        name = f"{way} ({r.get('precision', 'float32')})"
        print(f"| {name} | {r['images']} | {rate} | {r['epoch_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    if {"article", "keras", "catdog"} <= set(results):
        a, k, c = results["article"], results["keras"], results["catdog"]
        print(f"\ncatdog prepare throughput / article load: {c['rate'] / a['rate']:.2f}x  (target >= 2.5)")
        print(f"catdog epoch / plain Keras epoch:        {c['epoch_s'] / k['epoch_s']:.2f}   (target <= 0.6)")
        print(f"catdog epoch / article in-memory epoch:  {c['epoch_s'] / a['epoch_s']:.2f}   (target <= 1.1)")
        print(f"catdog peak memory / article peak:       {c['peak_rss_mb'] / a['peak_rss_mb']:.2f}   (target <= 0.5)")
    if {"keras", "compute"} <= set(results):
        k, f = results["keras"], results["compute"]
        print(f"no-input floor / plain Keras epoch:      {f['epoch_s'] / k['epoch_s']:.2f}   (how much of Keras's "
              f"epoch is the model's own arithmetic)")


if __name__ == "__main__":
    main()

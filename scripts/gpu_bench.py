#!/usr/bin/env python
"""Training throughput (images per second) of one catdog model on whatever device the backend picks.

Runs catdog's own path: synthetic photos drawn by catdog.demo, prepared into catdog's cache,
read back in batches by catdog.batches, the model built and compiled by catdog under its
precision policy and XLA setting (distribute.start, exactly as `catdog train` does). Only the
steady state is timed: `--warmup` steps (XLA compilation, cache warm-up) are run first, then
`--steps` steps are timed between two points where the device has finished its work.

Prints one JSON line. Pick the device the usual way (JAX_PLATFORMS=cpu, CUDA_VISIBLE_DEVICES=).
scripts/gpu_check.sh runs it on the GPU and on the CPU, for two models, and prints the table.

Usage:
  KERAS_BACKEND=jax python scripts/gpu_bench.py --workdir /tmp/catdog-bench --model article
  KERAS_BACKEND=jax python scripts/gpu_bench.py --workdir /tmp/catdog-bench --model cnn --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True, type=Path, help="Synthetic photos and catdog's cache (reused).")
    ap.add_argument("--model", default="article", help="model.name: article, cnn, resnet, xception.")
    ap.add_argument("--size", type=int, default=300, help="data.image_size (the article's is 300).")
    ap.add_argument("--batch", type=int, default=128, help="train.batch_size.")
    ap.add_argument("--steps", type=int, default=50, help="Timed training steps.")
    ap.add_argument("--warmup", type=int, default=5, help="Untimed steps first (compilation).")
    ap.add_argument("--precision", default="auto", help="train.precision.")
    ap.add_argument("--photos", type=int, default=128, help="Synthetic photos per class (batches cycle over them).")
    args = ap.parse_args()
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    import keras
    import numpy as np

    from catdog import distribute
    from catdog.batches import batches
    from catdog.config import load_config
    from catdog.demo import make_dataset
    from catdog.devices import gpus, jit_enabled, training_device
    from catdog.models import build_model
    from catdog.optimizers import compile_model
    from catdog.splits import prepare_folder

    config = load_config(None, [f"model.name={args.model}", f"data.image_size={args.size}",
                                f"train.batch_size={args.batch}", f"train.precision={args.precision}",
                                f"data.cache_dir={args.workdir / 'cache'}"])
    dist = distribute.start(config)  # memory growth and the precision policy, as in `catdog train`
    photos = args.workdir / "photos"
    if not (photos / "stripes").is_dir() or len(list((photos / "stripes").iterdir())) < args.photos:
        make_dataset(photos, per_class=args.photos, size=min(args.size, 256))
    prepared = prepare_folder(config, photos)
    log(f"{len(prepared.rows)} photos in catdog's cache at {args.size}x{args.size}")

    total = args.warmup + args.steps
    # Cycle over the cached photos so any number of steps reads real cache rows.
    rows = np.resize(prepared.rows, total * args.batch)
    data = batches(prepared.images, rows, prepared.row_targets(False), args.batch, shuffle=True, seed=0)

    marks: dict[str, float] = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in (args.warmup, total):
                # Reading the loss waits for the device to finish this step (JAX runs ahead).
                float(keras.ops.convert_to_numpy((logs or {})["loss"]))
                marks["start" if batch + 1 == args.warmup else "end"] = time.perf_counter()
                log(f"step {batch + 1}/{total} done")

    with dist.scope():
        model = build_model(config, 2)
        compile_model(model, config, total)
        began = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=total, callbacks=[Clock()], verbose=0)
    seconds = marks["end"] - marks["start"]
    print(json.dumps({
        "model": args.model, "size": args.size, "batch": args.batch, "steps": args.steps,
        "device": training_device(), "gpu": bool(gpus()), "precision": dist.precision,
        "xla": jit_enabled(config.train.jit_compile), "params": model.count_params(),
        "warmup_s": round(marks["start"] - began, 2),
        "images_per_s": round(args.steps * args.batch / seconds, 1),
    }), flush=True)


if __name__ == "__main__":
    main()

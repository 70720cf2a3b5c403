#!/usr/bin/env python
"""Training-step time with catdog's one-warp augmentation against Keras's augmentation layers.

Three versions of the same network (a config's model, default small), trained on
the same random batch, in one process, timed in interleaved rounds (the machine's speed drifts
from minute to minute, so each way gets the same minutes):

  none    the model without augmentation: the floor
  keras   Keras's RandomFlip("horizontal"), RandomRotation, RandomZoom, RandomTranslation with
          the config's ranges in front of the model without augmentation: the plain-Keras way,
          three resamplings per photo
  catdog  the model as catdog builds it: catdog.layers.RandomGeometry, one affine warp per photo

It prints the median milliseconds per training step of each, and the augmentation's share
(way minus none) as a ratio of Keras's.

Usage:
  python scripts/bench_augment.py [-c small] [--batch 32] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="small")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per way per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    from keras import layers

    from catdog.config import load_config
    from catdog.devices import resolve_precision
    from catdog.models import build_model

    config = load_config(args.config)
    m = config.model
    if not (m.rotation or m.zoom or m.translation):
        parser.error(f"{args.config} has no rotation, zoom or translation to compare")
    keras.mixed_precision.set_global_policy(resolve_precision(config.train.precision))
    plain = load_config(args.config, ["model.flip=false", "model.rotation=0", "model.zoom=0", "model.translation=0"])
    height, width = config.data.image_size

    def keras_way() -> keras.Model:
        inp = keras.Input((height, width, 3))
        x = inp
        if m.flip:
            x = layers.RandomFlip("horizontal")(x)
        if m.rotation:
            x = layers.RandomRotation(m.rotation, fill_mode="reflect")(x)
        if m.zoom:
            x = layers.RandomZoom(m.zoom, fill_mode="reflect")(x)
        if m.translation:
            x = layers.RandomTranslation(m.translation, m.translation, fill_mode="reflect")(x)
        return keras.Model(inp, build_model(plain, 2)(x))

    ways = {"none": build_model(plain, 2), "keras": keras_way(), "catdog": build_model(config, 2)}
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch, height, width, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[rng.integers(0, 2, args.batch)]
    times: dict[str, list[float]] = {name: [] for name in ways}
    for model in ways.values():
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss="categorical_crossentropy")
        for _ in range(3):  # tracing and first-call allocations
            model.train_on_batch(x, y)
    for _ in range(args.rounds):
        for name, model in ways.items():
            for _ in range(args.steps):
                began = time.perf_counter()
                model.train_on_batch(x, y)
                times[name].append(time.perf_counter() - began)

    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    print(f"{args.config}: {height}x{width}, batch {args.batch}, {config.train.precision}, "
          f"median of {args.rounds} x {args.steps} steps per way")
    for name, value in ms.items():
        print(f"  {name:7s} {value:7.1f} ms/step")
    aug_keras, aug_catdog = ms["keras"] - ms["none"], ms["catdog"] - ms["none"]
    print(f"  augmentation: keras {aug_keras:.1f} ms, catdog {aug_catdog:.1f} ms "
          f"(catdog/keras {aug_catdog / aug_keras:.2f}); whole step catdog/keras {ms['catdog'] / ms['keras']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

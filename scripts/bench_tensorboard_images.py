"""What writing catdog's pictures into the TensorBoard logs costs (docs/speed.md).

Trains a config for a few epochs on a photo folder into a temporary run folder, then times: the
learning curves written as training ends (against an epoch), the pass of predictions over the
validation photos that a confusion matrix at the end of training would need (training makes none),
`evaluate` on a folder and its pictures' write, and tf.summary.image's decode and encode of the
same pictures, which catdog skips by writing the PNG as drawn.

    python scripts/bench_tensorboard_images.py data/cats_and_dogs_filtered/train \
        data/cats_and_dogs_filtered/validation -c small --epochs 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", help="the photo folder to train on")
    parser.add_argument("validation", help="a labelled photo folder to evaluate on")
    parser.add_argument("-c", "--config", default="small")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import numpy as np

    from catdog.config import load_config
    from catdog.evaluation import class_probabilities, evaluate, pictures_to_tensorboard
    from catdog.runs import load_run
    from catdog.splits import prepare_folder
    from catdog.tensorboard_images import write_images
    from catdog.training import train

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        said: list[str] = []
        train(load_config(args.config, [f"train.epochs={args.epochs}", "train.tensorboard=true"]), args.train, run,
              report=said.append)
        print(*[line for line in said if line.startswith("epoch ")], sep="\n")
        curves = {"learning_curves": run / "learning_curves.png"}
        probe = run / "tensorboard" / "probe"
        times = timed(lambda: write_images(probe, 0, curves), args.repeat)
        print(f"learning curves written: median {statistics.median(times) * 1000:.1f} ms of {args.repeat}")

        r = load_run(run)
        record = json.loads((run / "split.json").read_text())
        prepared = prepare_folder(r.config, record["validation_root"] or record["root"], classes=r.classes)
        wanted = set(record["validation"])
        idx = np.array([i for i, f in enumerate(prepared.files) if f in wanted])
        class_probabilities(r.model, prepared.images, prepared.rows[idx[:8]])  # the first call compiles
        start = time.perf_counter()
        class_probabilities(r.model, prepared.images, prepared.rows[idx])
        print(f"predictions over the {len(idx)} validation photos: {time.perf_counter() - start:.2f} s")

        start = time.perf_counter()
        report = evaluate(r, args.validation)
        print(f"evaluate on {report.count} photos, pictures written: {time.perf_counter() - start:.2f} s")
        times = timed(lambda: pictures_to_tensorboard(r, report), args.repeat)
        print(f"evaluation pictures written: median {statistics.median(times) * 1000:.1f} ms of {args.repeat}")

        import tensorflow as tf

        def through_summary_image() -> None:
            with tf.summary.create_file_writer(str(probe)).as_default():
                for picture in report.pictures:
                    tf.summary.image(picture.stem, tf.io.decode_png(picture.read_bytes())[None], step=0)

        times = timed(through_summary_image, args.repeat)
        print(f"the same through tf.summary.image (decode, encode): median {statistics.median(times) * 1000:.1f} ms")


if __name__ == "__main__":
    main()

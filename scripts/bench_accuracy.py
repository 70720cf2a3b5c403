#!/usr/bin/env python
"""Train a config on one photo folder, score it on another, print one Markdown table row.

Columns: config, accuracy on the scoring folder, the same with flip test-time augmentation
(`catdog evaluate --tta`: each photo's answer averaged with its mirror image's), log loss, training
minutes (model.fit wall time, every epoch's validation pass included; decoding the photos into the
cache and scoring are not), total minutes (everything this script did but the TTA scoring),
parameters. It uses only catdog's own API
(catdog.training.train, catdog.evaluation.evaluate), so what it measures is what
`catdog train` + `catdog evaluate` give.

Validation during training comes from the training folder (the config's data.validation_split),
never from the scoring folder, so choosing the best epoch cannot peek at the scores.

Usage:
  python scripts/bench_accuracy.py -c small \\
      --train data/cats_and_dogs_filtered/train \\
      --test data/cats_and_dogs_filtered/validation [--header] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HEADER = ("| config | accuracy | with flip TTA | log loss | training min | total min | parameters |\n"
          "|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True, help="YAML config, e.g. small, or a YAML file")
    parser.add_argument("--train", required=True, help="folder of class sub-folders to train on")
    parser.add_argument("--test", required=True, help="folder of class sub-folders to score")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="run folder (default: a new one under runs/)")
    parser.add_argument("--header", action="store_true", help="print the table header first")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    from catdog.config import load_config
    from catdog.errors import CatdogError
    from catdog.evaluation import evaluate
    from catdog.runs import load_run
    from catdog.training import train

    began = time.perf_counter()
    try:
        config = load_config(args.config, args.overrides)
        result = train(config, args.train, args.out, report=lambda m: print(m, file=sys.stderr))
        report = evaluate(result.run_dir, args.test)
    except CatdogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    params = load_run(result.run_dir).model.count_params()
    total = time.perf_counter() - began
    tta = evaluate(result.run_dir, args.test, tta=True)
    name = Path(args.config).name + "".join(f" {o}" for o in args.overrides)
    row = (f"| {name} | {report.accuracy:.1%} | {tta.accuracy:.1%} | {report.log_loss:.3f} | "
           f"{result.seconds / 60:.1f} | {total / 60:.1f} | {params:,} |")
    print(f"{result.line()}\n{report.count} images scored from {args.test}", file=sys.stderr)
    if args.header:
        print(HEADER)
    print(row)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": name, "accuracy": report.accuracy, "log_loss": report.log_loss, "images": report.count,
            "accuracy_tta": tta.accuracy, "log_loss_tta": tta.log_loss,
            "training_minutes": result.seconds / 60, "total_minutes": total / 60, "parameters": params,
            "epochs": result.epochs, "best_epoch": result.best_epoch, "run": str(result.run_dir),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

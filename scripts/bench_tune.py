#!/usr/bin/env python
"""Issue 22's tune target: does the config `catdog tune` writes score at least as well as the one it started from?

1. `catdog tune -c CONFIG --data TRAIN --budget BUDGET --out OUT` (the command a user runs; its wall
   time is measured against the budget);
2. CONFIG and OUT/best.yaml each trained on TRAIN and scored on TEST (never seen by tune: tune
   scores its trials on photos it holds out of TRAIN) with scripts/bench_accuracy.py, once per seed.

Prints a Markdown table (config, seed, accuracy, with flip TTA, log loss, training minutes) and the
tune's own figures (wall time against the budget, trials by state, the best trial's values).

Usage (the measurement in docs/accuracy.md: 30 minutes of search, then 4 trainings of ~8 minutes):
  python scripts/bench_tune.py -c small --train data/cats_and_dogs_filtered/train \\
      --test data/cats_and_dogs_filtered/validation --budget 30m --seeds 42 1 --out tune/bench
A smoke run of the whole chain in a few minutes: --budget 2m --seeds 42 --set train.epochs=1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default="small", help="built-in config or YAML file (default small)")
    parser.add_argument("--train", required=True, help="folder of class sub-folders: tune and training use it")
    parser.add_argument("--test", required=True, help="folder of class sub-folders to score (tune never sees it)")
    parser.add_argument("--budget", default="30m", help="tune's budget (default 30m)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1], help="training seeds (default 42 1)")
    parser.add_argument("--out", default="tune/bench", help="the tune folder (default tune/bench)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to tune and to every training (e.g. train.epochs=1 for a smoke run)")
    args = parser.parse_args(argv)

    sets = [a for o in args.overrides for a in ("--set", o)]
    catdog = [sys.executable, "-c", "from catdog.cli import main; main()"]
    began = time.monotonic()
    tuned = subprocess.run([*catdog, "tune", "-c", args.config, "--data", args.train, "--budget", args.budget,
                            "--out", args.out, "--quiet", *sets], text=True, capture_output=True)
    tune_seconds = time.monotonic() - began
    print(tuned.stdout, end="")
    if tuned.returncode != 0:
        print(tuned.stderr, file=sys.stderr)
        return tuned.returncode
    from catdog.tune import parse_budget

    budget = parse_budget(args.budget)
    trials = list(csv.DictReader((Path(args.out) / "trials.csv").open()))
    states = {s: sum(r["state"] == s for r in trials) for s in dict.fromkeys(r["state"] for r in trials)}

    rows = []
    best = str(Path(args.out) / "best.yaml")
    for config in (args.config, best):
        for seed in args.seeds:
            # Beside the tune folder, not in it: tune refuses to continue in a folder holding other files.
            numbers = Path(f"{args.out}-scores") / f"{Path(config).stem}-{seed}.json"
            numbers.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_accuracy.py"), "-c", config,
                                   "--train", args.train, "--test", args.test, "--json", str(numbers),
                                   "--set", f"seed={seed}", *sets], text=True, capture_output=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            n = json.loads(numbers.read_text())
            rows.append(f"| `{config}` | {seed} | **{n['accuracy']:.1%}** | {n['accuracy_tta']:.1%} | "
                        f"{n['log_loss']:.3f} | {n['training_minutes']:.1f} |")
    print(f"\ntune: {tune_seconds:.0f} s of a {budget:.0f} s budget ({tune_seconds / budget - 1:+.1%}); "
          f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in states.items())
          + f"; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print("\n| config | seed | accuracy | with flip TTA | log loss | training min |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

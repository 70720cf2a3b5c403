#!/usr/bin/env python
"""How long `catdog runs` takes over many run folders (docs/speed.md, "Listing runs").

Writes `--runs` fake run folders as catdog train and catdog evaluate leave them (config.yaml,
history.json of 30 epochs, training.json, an empty model.keras, one evaluation report) into a
temporary folder, then times `list_runs` in this process and the whole `catdog runs DIR` command
in a fresh one; each the median of `--repeat`.

    python scripts/bench_runs_table.py --runs 100 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from catdog.config import load_config, save_config
from catdog.run_table import list_runs


def fake_runs(root: Path, count: int) -> None:
    config = load_config("small", ["train.epochs=30"])
    for i in range(count):
        run = root / f"20250101-{i:06d}-small"
        (run / "evaluation" / "held-out").mkdir(parents=True)
        save_config(config, run / "config.yaml")
        history = {k: [0.5 + 0.01 * e for e in range(30)] for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
        (run / "history.json").write_text(json.dumps(history))
        (run / "training.json").write_text(json.dumps({"seconds": 100.0 + i, "epochs_done": 30}))
        (run / "model.keras").write_bytes(b"")
        (run / "evaluation" / "held-out" / "report.json").write_text(json.dumps(
            {"source": "held-out", "accuracy": 0.9, "balanced_accuracy": 0.89}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="catdog-runs-bench-"))
    try:
        fake_runs(root, args.runs)
        inside, command = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            assert len(list_runs(root)) == args.runs
            inside.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "from catdog.cli import main; main()", "runs", str(root)],
                           check=True, capture_output=True)
            command.append(time.perf_counter() - start)
        print(f"{args.runs} runs: list_runs {statistics.median(inside):.3f} s, "
              f"catdog runs (whole command, Python start-up included) {statistics.median(command):.3f} s "
              f"(median of {args.repeat})")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()

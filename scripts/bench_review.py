"""Measure `catdog review` on a copy of the cats-vs-dogs photos with known problems (docs/review.md).

    python scripts/bench_review.py --src data/cats_and_dogs_filtered -c small

Builds, in a new folder under --work (default /tmp): train/, the 2,000 training photos with a seeded
5% of labels flipped (scripts/flip_labels.py), and validation/, the 1,000 validation photos plus 10
planted copies of training photos of each kind (exact, half, q60, crop5; scripts/plant_duplicates.py).
Then runs `catdog review --data train --set data.validation_dir=validation` with a cold private
cache and reports, as one JSON object and a few lines:
- seconds: the review's wall-clock time, photo decoding included;
- recall_at_150: the share of flipped photos among the first 150 training photos ranked as likely
  mislabels, and not_flipped_in_150: how many of those 150 were not flipped;
- planted_found / planted: planted pairs found as exact or near copies, and false_pairs: pairs
  reported that were not planted (among 3,000 real photos and the copies).
The source folders are only read; the work folder is left for a look at the sheets.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, required=True,
                        help="folder holding train/ and validation/ class folders (catdog download --to data: "
                             "data/cats_and_dogs_filtered)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("-c", "--config", default="small")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--top", type=int, default=150)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="catdog-bench-review-", dir=args.work))
    py = sys.executable
    subprocess.run([py, HERE / "flip_labels.py", args.src / "train", work / "train", "--share", "0.05"], check=True)
    subprocess.run([py, HERE / "plant_duplicates.py", args.src / "train", work / "validation",
                    "--also", args.src / "validation", "--count", "10"], check=True)
    env = {**os.environ, "CATDOG_CACHE": str(work / "cache"), "PYTHONPATH": str(REPO)}
    command = [py, "-c", "from catdog.cli import main; main()", "review", "-c", args.config,
               "--data", str(work / "train"), "--set", f"data.validation_dir={work / 'validation'}",
               "--folds", str(args.folds),
               "--out", str(work / "review"), *[a for s in args.sets for a in ("--set", s)]]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - start

    flipped = {r["path"] for r in rows(work / "train-flipped.csv")}
    moved = {f"{r['true']}/{r['path'].split('/', 1)[1]}": r["path"] for r in rows(work / "train-flipped.csv")}
    issues = rows(work / "review" / "issues.csv")
    # Training photos are named relative to --data; the validation folder's photos absolutely.
    ranked = [r["path"] for r in issues if r["issue"] == "mislabel" and not r["path"].startswith("/")][:args.top]
    hits = sum(p in flipped for p in ranked)
    validation = (work / "validation").resolve()
    planted = {frozenset((moved.get(r["source"], r["source"]), (validation / r["copy"]).as_posix())): r["kind"]
               for r in rows(work / "validation-planted.csv")}
    reported = {frozenset((r["path"], r["other_copy"])) for r in issues
                if r["issue"] in ("duplicate", "near_duplicate")}
    found = {kind: 0 for kind in planted.values()}
    for pair, kind in planted.items():
        found[kind] += pair in reported
    result = {"photos": 3000 + len(planted), "config": args.config, "folds": args.folds, "sets": args.sets,
              "seconds": round(seconds, 1), "flipped": len(flipped), "top": args.top,
              f"recall_at_{args.top}": round(hits / len(flipped), 3), f"not_flipped_in_{args.top}": len(ranked) - hits,
              "planted": len(planted), "planted_found": sum(found.values()), "found_by_kind": found,
              "false_pairs": len(reported - set(planted)), "work": str(work)}
    print(json.dumps(result))
    for pair in sorted(map(sorted, reported - set(planted))):
        print("false pair:", " = ".join(pair))


if __name__ == "__main__":
    main()

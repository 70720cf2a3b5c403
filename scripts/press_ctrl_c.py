"""Press Ctrl-C in `catdog train` many times and count how each press ended.

Each press starts `catdog train` on 48 tiny photos (16x16, 200 epochs, `--quiet`) in a temporary
folder, waits for its `epoch 1/200` line and a random delay up to --max-delay seconds, and sends
SIGINT. A press ends well when the process exits 130 with the resume command as its last line; any
other ending (a crash, exit 0, no message) is counted, and its stdout and stderr (with every
thread's stack, PYTHONFAULTHANDLER) are kept in --keep. About 9 s a press on 2 cores.

    python scripts/press_ctrl_c.py --presses 150 --max-delay 0
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN = ["train", "--quiet", "--set", "train.epochs=200", "--set", "data.image_size=16", "--set",
         "train.batch_size=8"]


def write_photos(root: Path) -> None:
    """24 dark 'cats' and 24 bright 'dogs' of 16x16 pixels."""
    rng = np.random.default_rng(0)
    for name, low in (("cats", 0), ("dogs", 128)):
        (root / name).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(low, low + 128, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.jpg", quality=90)


def press(photos: Path, run: Path, cache: Path, delay: float) -> tuple[str, str, str]:
    """(how it ended, stdout, stderr) of one `catdog train` interrupted `delay` s after its first epoch."""
    env = dict(os.environ, CATDOG_CACHE=str(cache), PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    script = "import sys; from catdog.cli import main; sys.argv[0] = 'catdog'; main()"
    proc = subprocess.Popen([sys.executable, "-c", script, *TRAIN, "--data", str(photos), "--out", str(run)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if line.startswith("epoch 1/200"):
            break
    try:
        proc.wait(timeout=delay)  # the delay, unless the process ends first
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return "hung (killed after 300 s)", seen + out, err
    lines = err.strip().splitlines()
    if proc.returncode == 130 and lines and re.fullmatch(r"training interrupted: .*catdog train --resume .*",
                                                          lines[-1]):
        return "exit 130, resume command", seen + out, err
    if proc.returncode < 0:
        return f"killed by {signal.Signals(-proc.returncode).name}", seen + out, err
    return f"exit {proc.returncode}" + ("" if proc.returncode != 130 else ", no resume command"), seen + out, err


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--max-delay", type=float, default=0.0, help="seconds after the epoch line, at most")
    parser.add_argument("--keep", type=Path, default=Path("ctrl-c-failures"),
                        help="folder for the output of presses that did not end well")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    endings: collections.Counter[str] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        write_photos(photos)
        for i in range(args.presses):
            ending, out, err = press(photos, Path(tmp) / f"run{i}", Path(tmp) / "cache", rng.uniform(0, args.max_delay))
            endings[ending] += 1
            if ending != "exit 130, resume command":
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"press{i}.out").write_text(out)
                (args.keep / f"press{i}.err").write_text(err)
                print(f"press {i}: {ending}; output in {args.keep}", flush=True)
    print(f"{args.presses} presses, up to {args.max_delay} s after the epoch line:")
    for ending, count in endings.most_common():
        print(f"  {count:4d}  {ending}")
    sys.exit(0 if set(endings) == {"exit 130, resume command"} else 1)


if __name__ == "__main__":
    main()

"""How long `catdog predict` takes for one photo, cold, beside a plain Keras script; and folder img/s.

Each measurement starts a fresh Python process, as a user's command does: the median of several
cold runs of `catdog predict` (ONNX Runtime when the run holds model.onnx) against a plain Keras
script doing the same (import keras and catdog.layers, load_model, decode, predict), taken
alternately in one run so that the machine's load falls on both alike. The floor is shown beside
them: a bare Python start and bare imports of numpy and onnxruntime. Then a folder:
`catdog.prediction.predict` img/s against the model's own compute limit (ONNX Runtime and Keras
on an in-memory batch).

Usage:
    python scripts/bench_predict.py --run RUN --photo PHOTO --folder FOLDER [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What a user's own script needs to load a catdog model: Keras, plus catdog.layers, which registers
# catdog's layers (RandomGeometry in the ResNet and transfer configs, L2Pooling2D) with Keras.
PLAIN_KERAS = """
import sys
import keras
import catdog.layers
import numpy as np
from PIL import Image
model = keras.saving.load_model(sys.argv[1])
height, width = model.input_shape[1:3]
x = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize((width, height)), dtype="float32")[None]
print(model.predict(x, verbose=0))
"""


def cold(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    # A warning from catdog predict: Keras answered, not ONNX Runtime, and the timing is not the one wanted.
    if out.returncode != 0 or (cmd[1:2] == ["predict"] and "warning: " in out.stderr):
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--photo", required=True, type=Path)
    ap.add_argument("--folder", type=Path, help="A folder of photos for the img/s part.")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    if not (args.run / "model.onnx").is_file():
        sys.exit(f"{args.run} holds no model.onnx: catdog export --run {args.run}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    catdog = [str(Path(sys.executable).with_name("catdog")), "predict", "--run", str(args.run), str(args.photo)]
    with tempfile.TemporaryDirectory() as scratch:
        # A plain copy gives model.keras a new time, so predict checks model.onnx's tie by hashing it.
        copy = shutil.copytree(args.run, Path(scratch) / args.run.name, copy_function=shutil.copyfile)
        copied = [*catdog[:3], str(copy), str(args.photo)]
        cold_table(args, env, catdog, copied)
    tie(args.run)
    if args.folder is not None:
        folder(args.run, args.folder)
        folder_cold(args.run, args.folder, max(3, args.repeats // 2), env)


def cold_table(args: argparse.Namespace, env: dict, catdog: list[str], copied: list[str]) -> None:
    plain = [sys.executable, "-c", PLAIN_KERAS, str(args.run / "model.keras"), str(args.photo)]
    floors = {"python -c pass": [sys.executable, "-c", "pass"],
              "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
              "python -c 'import onnxruntime'": [sys.executable, "-c", "import onnxruntime"]}
    times: dict[str, list[float]] = {"catdog predict (ONNX Runtime)": [], "plain Keras script": [],
                                     "catdog predict, run folder copied (model.keras hashed)": [],
                                     **{k: [] for k in floors}}
    cold(catdog, env)  # warm the file cache once; every timed run below is a new process
    cold(plain, env)
    for _ in range(args.repeats):
        times["catdog predict (ONNX Runtime)"].append(cold(catdog, env))
        times["plain Keras script"].append(cold(plain, env))
        times["catdog predict, run folder copied (model.keras hashed)"].append(cold(copied, env))
        for name, cmd in floors.items():
            times[name].append(cold(cmd, env))
    print(f"one photo, cold process, median of {args.repeats} (os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}):")
    print("| command | median s | min s | max s |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    ratio = statistics.median(times["plain Keras script"]) / statistics.median(times["catdog predict (ONNX Runtime)"])
    print(f"catdog predict is {ratio:.1f}x faster than the plain Keras script")


def tie(run_dir: Path, repeats: int = 21) -> None:
    """How long the check that model.onnx is the run's current export takes: a stat, or a SHA-256."""
    from catdog.runtime import file_sha256, keras_tie, tie_holds

    recorded = keras_tie(run_dir)
    stat, sha = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        assert tie_holds(run_dir, recorded)
        stat.append(time.perf_counter() - start)
        start = time.perf_counter()
        file_sha256(run_dir / "model.keras")
        sha.append(time.perf_counter() - start)
    size = (run_dir / "model.keras").stat().st_size / 1e6
    print(f"\nthe tie of model.onnx to model.keras ({size:.1f} MB), median of {repeats}: "
          f"{statistics.median(stat) * 1e6:.0f} µs untouched (stat), {statistics.median(sha) * 1e3:.1f} ms "
          f"hashed (SHA-256)")


def folder(run_dir: Path, root: Path) -> None:
    import numpy as np

    from catdog.images import load_image
    from catdog.prediction import expand, predict
    from catdog.runs import load_run
    from catdog.runtime import onnx_model

    files = expand([root])
    start = time.perf_counter()
    answers = [p for p in predict([root], run_dir) if p.error is None]
    took = time.perf_counter() - start
    r = load_run(run_dir)
    size = r.config.data.image_size
    batch = np.stack([load_image(f, size, r.config.data.resize) for f in files[:64]]).astype("float32")
    fast = onnx_model(r)
    if fast is None:
        sys.exit(f"{run_dir}/model.onnx is not this run's current export (see the warning above): "
                 f"catdog export --run {run_dir} --force")
    fast(batch)
    start = time.perf_counter()
    for _ in range(3):
        fast(batch)
    onnx_rate = 3 * len(batch) / (time.perf_counter() - start)
    r.model.predict_on_batch(batch)
    start = time.perf_counter()
    for _ in range(3):
        r.model.predict_on_batch(batch)
    keras_rate = 3 * len(batch) / (time.perf_counter() - start)
    print(f"\nfolder of {len(files)} photos at {size[0]}x{size[1]}:")
    print("| what | img/s |\n|---|---|")
    print(f"| catdog predict FOLDER (decode in threads + ONNX Runtime, in-process) | {len(answers) / took:.0f} |")
    print(f"| ONNX Runtime on an in-memory batch of {len(batch)} (compute limit) | {onnx_rate:.0f} |")
    print(f"| Keras predict_on_batch on the same batch | {keras_rate:.0f} |")


def folder_cold(run_dir: Path, root: Path, repeats: int, env: dict) -> None:
    """`catdog predict --json FOLDER` in a new process on each engine: the run (ONNX Runtime) and a
    copy of it without model.onnx (Keras), taken in turn; the whole command, imports included."""
    import shutil
    import tempfile

    count = sum(1 for f in root.rglob("*") if f.is_file())
    times: dict[str, list[float]] = {"ONNX Runtime (the run as trained)": [], "Keras (model.onnx removed)": []}
    with tempfile.TemporaryDirectory() as scratch:
        keras_run = Path(scratch) / run_dir.name
        shutil.copytree(run_dir, keras_run, ignore=shutil.ignore_patterns("model.onnx*", "evaluation", "show"))
        runs = dict(zip(times, (run_dir, keras_run), strict=True))
        command = str(Path(sys.executable).with_name("catdog"))
        for run in runs.values():  # the file cache warmed for both
            cold([command, "predict", "--json", "--run", str(run), str(root)], env)
        for _ in range(repeats):
            for name, run in runs.items():
                times[name].append(cold([command, "predict", "--json", "--run", str(run), str(root)], env))
    print(f"\ncatdog predict --json FOLDER, {count} files, a new process each time, median of {repeats} "
          f"(load average {os.getloadavg()[0]:.1f}):")
    print("| engine | median s | img/s |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {count / statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()

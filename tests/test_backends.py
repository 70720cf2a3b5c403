"""The whole path on other Keras backends, in a process where TensorFlow cannot be imported.

This is what a machine with JAX (or PyTorch) and no TensorFlow sees: the data path reads
catdog's own cache and needs no tf.data, and nothing may import TensorFlow unconditionally.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in the child. First TensorFlow is made as absent as if it were never installed: each
# sys.path folder holding it is swapped for a view of symlinks to everything else in it. (A
# meta-path finder raising ImportError is not enough: PyTorch probes with find_spec, which must
# answer None, not raise.) Then every command runs through the CLI, reporting as JSON.
SCRIPT = r"""
import importlib, importlib.util, json, os, sys, tempfile

views = tempfile.mkdtemp(prefix="no-tensorflow-")
for i, folder in enumerate(list(sys.path)):
    if folder and os.path.isdir(os.path.join(folder, "tensorflow")):
        view = os.path.join(views, str(i))
        os.mkdir(view)
        for entry in os.listdir(folder):
            if not entry.lower().startswith("tensorflow"):
                os.symlink(os.path.join(folder, entry), os.path.join(view, entry))
        sys.path[i] = view
sys.path_importer_cache.clear()
importlib.invalidate_caches()
assert importlib.util.find_spec("tensorflow") is None, "tensorflow still importable"
try:
    import tensorflow
    sys.exit("tensorflow imported despite being hidden")
except ImportError:
    pass

from click.testing import CliRunner
from catdog.cli import main

data, run = sys.argv[1], sys.argv[2]
fast = ["--set", "train.epochs=1", "--set", "data.image_size=16", "--set", "train.batch_size=8"]
steps = {
    "info": ["info", "--json"],
    "prepare": ["prepare", "--data", data, "--set", "data.image_size=16"],
    "train": ["train", "--data", data, "--out", run, "--quiet", *fast, "--set", "data.test_split=0.25"],
    "evaluate": ["evaluate", "--run", run, "--json"],
    "predict": ["predict", "--run", run, "--json", data + "/cats"],
    "summary": ["summary", "--run", run],
    "summary_config": ["summary", "--set", "data.image_size=16"],
    "show": ["show", "--run", run, "--out", run + "-show", data + "/cats/img_000.jpg"],
}
results = {}
for name, args in steps.items():
    r = CliRunner().invoke(main, args)
    results[name] = {"exit": r.exit_code, "out": r.stdout, "all": r.output[-4000:],
                     "error": repr(r.exception) if r.exception and r.exit_code != 0 else None}
results["tensorflow_loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
print("RESULTS " + json.dumps(results))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_end_to_end_without_tensorflow(backend, tiny_data, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (jax is a test extra; torch is optional)")
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_data), str(tmp_path / "run")], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    failed = {k: v for k, v in results.items() if isinstance(v, dict) and v["exit"] != 0}
    if (backend == "torch" and "show" in failed
            and "HiResCAM runs on the tensorflow and jax backends" in failed["show"]["all"]):
        del failed["show"]  # inspection's gradient has no PyTorch version yet; it says so in one line
    assert not failed, failed
    assert results["tensorflow_loaded"] == []

    assert json.loads(results["info"]["out"])["backend"] == backend
    assert "cats: 24" in results["prepare"]["out"]
    assert "training on CPU (" in results["train"]["out"] and f"{backend});" in results["train"]["out"]
    assert "best epoch 1/1" in results["train"]["out"]
    report = json.loads(results["evaluate"]["out"])
    assert report["images"] == 12 and 0 <= report["accuracy"] <= 1
    predictions = [json.loads(x) for x in results["predict"]["out"].splitlines() if x.startswith("{")]
    assert len(predictions) == 24 and all(0 <= p["probability"] <= 1 for p in predictions)
    assert "total params" in results["summary"]["out"] and "12×12×10" in results["summary_config"]["out"]
    if backend == "jax":
        assert list((tmp_path / "run-show").glob("*.png"))

"""Every built-in config through every command a user types, shrunk to a few tiny photos and one epoch.

train -> evaluate -> predict (ONNX Runtime and Keras) -> show -> summary --run -> export (each
format whose runtime is installed) -> serve (health, predict, explain, the page and its model
endpoint), on the TensorFlow backend in this process and again on JAX in a child process. Each
step is checked for what it must hold, not only for its exit code: this matrix caught `serve`
crashing at start on every ResNet run while the article's model passed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_images

from catdog.cli import main
from catdog.prediction import predict

SIZE = 32  # MobileNetV2, the transfer backbone, takes nothing smaller
HERE = Path(__file__).resolve().parent


def shrunk(name: str) -> list[str]:
    """--set arguments that make config `name` train in seconds, with held-out photos to score."""
    sets = [f"data.image_size={SIZE}", "train.epochs=1", "train.batch_size=8", "data.test_split=0.25",
            "data.validation_split=0.25"]
    if name == "transfer":
        sets += ["model.weights=none", "model.freeze_epochs=0"]  # no ImageNet download in a test
    if name in ("small", "large"):
        # The ResNets' `auto` is bfloat16 on CPUs that have it: test that path on every machine.
        sets += ["train.precision=mixed_bfloat16"]
    return [arg for s in sets for arg in ("--set", s)]


def photos(root: Path) -> Path:
    """Eight dark 'cats' and eight bright 'dogs', 40x40 JPEGs."""
    write_images(root / "cats", 8, size=40, seed=1)
    write_images(root / "dogs", 8, size=40, seed=2, bright=True)
    return root


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, f"catdog {' '.join(args)}:\n{result.output}"
    return result.stdout


def predictions(out: str) -> dict[str, dict]:
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all("error" not in r for r in rows), rows
    return {Path(r["path"]).name: r for r in rows}


def serve_checks(run: Path, photo: Path) -> dict:
    """Start `catdog serve`'s application for `run` on a free port, ask every endpoint, stop it."""
    import uvicorn

    from catdog.serve import build

    server = uvicorn.Server(uvicorn.Config(build(run), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 60
        while not server.started:
            assert time.time() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"

        def ask(path: str, body: bytes | None = None) -> tuple[int, bytes]:
            request = urllib.request.Request(url + path, data=body, method="POST" if body else "GET")
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()

        data = photo.read_bytes()
        return {"health": json.loads(ask("/v1/health")[1]), "predict": json.loads(ask("/v1/predict", data)[1]),
                "explain": json.loads(ask("/v1/explain", data)[1]), "model": json.loads(ask("/v1/model")[1]),
                "page": ask("/")[1].decode()}
    finally:
        server.should_exit = True
        thread.join(30)


def walk(name: str, root: Path) -> dict:
    """Every command on config `name` under `root`; what each answered, for the checks."""
    import keras

    from catdog.export import LITERT_KERAS
    from catdog.keras_private import keras_version

    data = photos(root / "photos")
    run = root / "run"
    tensorflow = keras.backend.backend() == "tensorflow"
    seen: dict = {"backend": keras.backend.backend()}
    cli("train", "-c", name, "--data", str(data), "--out", str(run), "--quiet", *shrunk(name))
    seen["files"] = sorted(p.name for p in run.iterdir())
    seen["evaluate"] = json.loads(cli("evaluate", "--run", str(run), "--json"))
    seen["predict"] = predictions(cli("predict", "--run", str(run), "--json", str(data / "cats")))
    # The same photos through Keras: a copy of the run without model.onnx, which predict may not write.
    keras_run = root / "keras-run"
    shutil.copytree(run, keras_run, ignore=shutil.ignore_patterns("model.onnx*"))
    seen["predict_keras"] = {p.path.name: p.to_dict() for p in predict([data / "cats"], keras_run, write_onnx=False)}
    show_out = cli("show", "--run", str(run), "--out", str(root / "show"), str(data / "dogs" / "img_000.jpg"))
    seen["show"] = {"line": show_out.splitlines()[0], "files": sorted(p.name for p in (root / "show").iterdir())}
    seen["summary"] = cli("summary", "--run", str(run))
    seen["export"] = {}
    if tensorflow:  # the exporters convert TensorFlow graphs
        # ONNX as the README runs it, right after train (which wrote model.onnx); the others beside.
        seen["export"]["onnx"] = cli("export", "--run", str(run), "--format", "onnx")
        formats = {"savedmodel": "savedmodel", "litert": "model.tflite"}
        for fmt, out in formats.items():
            if fmt == "litert" and keras_version() < LITERT_KERAS:
                continue
            seen["export"][fmt] = cli("export", "--run", str(run), "--format", fmt, "--out", str(root / out))
    if importlib.util.find_spec("uvicorn") is not None:
        seen["serve"] = serve_checks(run, data / "dogs" / "img_000.jpg")
    return seen


def check(name: str, seen: dict) -> None:
    """What every config must hold after `walk`."""
    assert {"model.keras", "classes.json", "config.yaml", "history.json"} <= set(seen["files"])
    report = seen["evaluate"]
    assert report["images"] > 0 and 0 <= report["accuracy"] <= 1
    onnx, plain = seen["predict"], seen["predict_keras"]
    assert sorted(onnx) == sorted(plain) == [f"img_{i:03d}.jpg" for i in range(8)]
    for photo, row in onnx.items():
        assert row["label"] in ("cats", "dogs")
        # The label is the most probable class, on both engines.
        assert row["probability"] == max(row["probabilities"].values())
        # ONNX is the float32 network; the ResNets train in bfloat16, whose rounding Keras keeps.
        diff = max(abs(row["probabilities"][c] - plain[photo]["probabilities"][c]) for c in ("cats", "dogs"))
        assert diff < (1e-4 if name in ("article", "transfer") or seen["backend"] != "tensorflow" else 0.05), \
            (photo, row, plain[photo])
    assert seen["show"]["line"].split(": ")[1].split(" (")[0] in ("cats", "dogs")
    assert {"input.png", "filters.png", "heatmap.png"} <= set(seen["show"]["files"])
    assert any(f.startswith("activations-") for f in seen["show"]["files"])
    assert "total params" in seen["summary"]
    for fmt, line in seen["export"].items():
        assert ("already this run's current export" if fmt == "onnx" else "labels agree") in line, (fmt, line)
    if "serve" in seen:
        served = seen["serve"]
        assert served["health"]["status"] == "ok"
        (answer,) = served["predict"]["predictions"]
        assert answer["label"] in ("cats", "dogs")
        assert served["explain"]["heatmap"].startswith("data:image/png;base64,")
        assert served["explain"]["label"] in ("cats", "dogs")
        assert served["model"]["classes"] == ["cats", "dogs"] and served["model"]["parameters"] > 0
        assert "/v1/model" in served["page"]


# transfer's walk takes 97 s (AMD EPYC, 2 cores, 2026-12-03; MobileNetV2's 52 activation maps in
# `show`, its exports): it walks with the slow tests. The default suite still trains, saves and
# fine-tunes transfer (test_models, test_training_features). large's walk (28 s) is slow too: its
# model comes from the ResNet builder that small's walk takes through every command in bfloat16, and
# the default suite still trains large as shipped (test_models) and its progressive resizing
# (test_progressive).
@pytest.mark.parametrize("name", ["article", "small", pytest.param("large", marks=pytest.mark.slow),
                                  pytest.param("transfer", marks=pytest.mark.slow)])
def test_every_command_on_every_built_in_config(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check(name, walk(name, tmp_path))


# The child runs `walk` on the configs named in its arguments with Keras on JAX, and prints what
# it saw as JSON.
JAX_SCRIPT = """
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_matrix import walk
seen = {}
for name in sys.argv[3:]:
    root = Path(tempfile.mkdtemp(dir=sys.argv[2]))
    seen[name] = walk(name, root)
print("SEEN " + json.dumps(seen))
"""


def under_jax(names: list[str], tmp_path: Path) -> None:
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (it is in the test extra)")
    env = {**os.environ, "KERAS_BACKEND": "jax", "CATDOG_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(HERE), str(tmp_path), *names], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SEEN ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    seen = json.loads(lines[0][5:])
    for name in names:
        assert seen[name]["backend"] == "jax"
        check(name, seen[name])


# Slow (about 2 minutes): the default suite keeps JAX in test_backends' end-to-end run without TensorFlow.
@pytest.mark.slow
def test_every_command_under_jax_on_the_article_and_a_resnet(tmp_path):
    # The two heads (flatten; shortcuts then global average) and bfloat16; the other two configs
    # reuse these builders on JAX and take minutes more, so they run with the slow tests.
    under_jax(["article", "small"], tmp_path)


@pytest.mark.slow
def test_every_command_under_jax_on_the_other_built_in_configs(tmp_path):
    under_jax(["large", "transfer"], tmp_path)

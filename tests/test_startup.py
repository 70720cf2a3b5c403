"""What a command does before TensorFlow starts (seconds): a wrong input stops it in one line
without loading TensorFlow at all, and a Keras backend whose package is missing is named in one
line with what to install. Each check runs the CLI in a new process, where `sys.modules` shows
whether TensorFlow was imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_images

from catdog.config import load_config, save_config

ROOT = Path(__file__).resolve().parents[1]

# Runs each command of argv[1] (a JSON list) through the CLI in this one process, in order, and
# reports its exit code, its stderr and whether TensorFlow or Keras was loaded by then.
CHILD = r"""
import json, sys
from click.testing import CliRunner
from catdog.cli import main

results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(main, args)
    results.append({"args": args, "exit": r.exit_code, "stderr": r.stderr,
                    "loaded": sorted(m for m in ("tensorflow", "keras") if m in sys.modules)})
print("RESULTS " + json.dumps(results))
"""


def child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_commands(commands: list[list[str]], cwd: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(commands)], capture_output=True, text=True,
                          cwd=cwd, env=child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


@pytest.fixture
def unscored_run(tmp_path) -> Path:
    """A run folder that held no photo out (data.validation_split and data.test_split 0). Its
    model.keras is not a model: a command that loads it before checking its inputs fails on it."""
    run = tmp_path / "run"
    run.mkdir()
    photos = tmp_path / "photos"
    write_images(photos / "cats", 2)
    write_images(photos / "dogs", 2, bright=True)
    save_config(load_config(None, ["data.validation_split=0", "data.test_split=0"]), run / "config.yaml")
    (run / "classes.json").write_text('["cats", "dogs"]')
    files = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    (run / "split.json").write_text(json.dumps({"root": str(photos), "validation_root": str(photos),
                                                "train": files, "validation": [], "test": []}))
    (run / "model.keras").write_bytes(b"not a model")
    return run


def test_wrong_inputs_stop_in_one_line_before_tensorflow_loads(unscored_run, tmp_path):
    missing = str(tmp_path / "missing")
    run = str(unscored_run)
    commands = {
        "train --data missing": (["train", "--data", missing, "--quiet"], "missing"),
        "train on an empty class folder": (["train", "--data", str(tmp_path / "empty"), "--quiet"], "empty"),
        "train --resume missing": (["train", "--resume", missing], "missing"),
        "a config file that is not there": (["train", "-c", missing + ".yaml", "--data", run], "missing.yaml"),
        "an unknown config key": (["train", "--set", "train.epochz=2", "--data", run], "train.epochz"),
        "a bad config value": (["train", "--set", "train.epochs=-3", "--data", run], "train.epochs"),
        "summary with a bad config value": (["summary", "--set", "model.filters=-3"], "model.filters"),
        "evaluate a run that held no photo out": (["evaluate", "--run", run], run),
        "evaluate on a missing folder": (["evaluate", "--run", run, "--data", missing], "missing"),
        "evaluate --run missing": (["evaluate", "--run", missing], "missing"),
        "predict --run missing": (["predict", "--run", missing, run], "missing"),
        "show --run missing": (["show", "--run", missing, run], "missing"),
        "show a missing photo": (["show", "--run", run, missing + ".jpg"], "not found"),
        "export --run missing": (["export", "--run", missing], "missing"),
        "summary --run missing": (["summary", "--run", missing], "missing"),
    }
    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "dogs").mkdir(parents=True)
    results = run_commands([args for args, _ in commands.values()], tmp_path)
    for (name, (_, named)), result in zip(commands.items(), results, strict=True):
        lines = result["stderr"].splitlines()
        assert result["exit"] == 1 and len(lines) == 1 and lines[0].startswith("Error: "), (name, result)
        assert named in lines[0], (name, result)
        # In order: the first command that loads TensorFlow is the one named here.
        assert result["loaded"] == [], (name, result)


def test_predict_of_photos_that_cannot_be_read_loads_no_model(unscored_run, tmp_path):
    (result,) = run_commands([["predict", "--run", str(unscored_run), str(tmp_path / "gone.jpg")]], tmp_path)
    assert result["exit"] == 1 and result["loaded"] == [], result
    assert result["stderr"].startswith(f"{tmp_path / 'gone.jpg'}: error: ") and result["stderr"].count("\n") == 1


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_keras_backend_whose_package_is_missing_is_named_in_one_line(backend, tmp_path):
    # The package is hidden from this process whether it is installed or not: None in sys.modules
    # makes `import torch` fail as it does where torch was never installed.
    code = (f"import sys\nsys.modules[{backend!r}] = None\n"
            "from catdog.cli import main\nmain(['summary', '-c', 'article'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=child_env(KERAS_BACKEND=backend), timeout=120)
    install = {"torch": "torch", "jax": "'jax[cpu]'"}[backend]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr == f"Error: KERAS_BACKEND={backend} but {backend} is not installed: pip install {install}\n"
    assert proc.stdout == ""


def test_a_keras_backend_that_does_not_exist_is_named_in_one_line(tmp_path):
    code = "from catdog.cli import main\nmain(['summary', '-c', 'article'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env=child_env(KERAS_BACKEND="tensorflw"), timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr == "Error: KERAS_BACKEND=tensorflw is not a Keras backend; use tensorflow, jax or torch\n"


def test_a_backend_chosen_in_keras_json_names_the_file(tmp_path):
    (tmp_path / "keras.json").write_text('{"backend": "torch"}')
    code = "import sys\nsys.modules['torch'] = None\nfrom catdog.cli import main\nmain(['summary', '-c', 'article'])"
    env = {k: v for k, v in child_env(KERAS_HOME=str(tmp_path)).items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr == (f"Error: {tmp_path}/keras.json selects the Keras backend torch, but torch is not "
                           f"installed: pip install torch\n")

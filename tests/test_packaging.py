"""The package as a pip user gets it: a wheel installed into a fresh environment, outside the checkout."""

from __future__ import annotations

import re
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    # No build isolation: the test extra brings setuptools, and tests never touch the network.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", wheels, ROOT],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("catdog-*.whl")
    return wheel


def test_the_wheel_holds_every_module_and_every_built_in_config(tmp_path):
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
    modules = {f"catdog/{p.name}" for p in (ROOT / "catdog").glob("*.py")}
    configs = {f"catdog/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")}
    assert len(configs) >= 4 and configs <= names, configs - names
    assert modules <= names, modules - names


# Slow (23 s: a virtual environment, a demo training); the default run checks the wheel's files
# (above), and CI runs this with the slow tests.
@pytest.mark.slow
def test_a_wheel_works_outside_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    env = tmp_path / "env"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
                   check=True, capture_output=True)
    # The dependencies (TensorFlow and the rest) come from this environment rather than the network.
    (purelib,) = env.glob("lib/python*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home = tmp_path / "home"  # no checkout here: configs/ must come from the package
    home.mkdir()

    def catdog(*args: str) -> str:
        done = subprocess.run([env / "bin" / "catdog", *args], cwd=home, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([python, "-c", "import catdog; print(catdog.__file__)"], cwd=home, capture_output=True,
                           text=True, check=True).stdout
    assert where.startswith(str(env))
    assert re.search(r"conv\s+Conv2D\s+296×296×10\s+760\s", catdog("summary", "-c", "article"))
    assert catdog("config", "list").split()[0] == "article"
    assert "name: resnet" in catdog("config", "show", "large")
    out = catdog("demo", "--epochs", "1", "--workdir", str(home / "demo"))
    assert "done. Everything is in" in out and (home / "demo" / "run" / "model.keras").is_file()

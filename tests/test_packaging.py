"""The package as a pip user gets it: a wheel installed into a fresh environment, outside the checkout."""

from __future__ import annotations

import re
import site
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_works_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    # No build isolation: the test extra brings setuptools, and tests never touch the network.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", wheels, ROOT],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("catdog-*.whl")
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

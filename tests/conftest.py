"""Shared fixtures: tiny generated photo folders and a private cache per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Tests never touch the user's ~/.cache/catdog.
    monkeypatch.setenv("CATDOG_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # `precision: auto` resolves as on a CPU without bfloat16 instructions (float32) on every
    # machine, AMX or not; tests of bfloat16 ask for it, or set these flags themselves.
    monkeypatch.setenv("CATDOG_CPU_FLAGS", "")


def write_images(folder: Path, count: int, size: int = 16, seed: int = 0, bright: bool = False) -> list[Path]:
    """`count` random JPEGs; `bright` ones are lighter so a model can tell the classes apart."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        low, high = (128, 256) if bright else (0, 128)
        pixels = rng.integers(low, high, (size, size, 3), dtype=np.uint8)
        path = folder / f"img_{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A class-folder dataset: 24 dark 'cats' and 24 bright 'dogs' of 16x16 pixels."""
    root = tmp_path / "photos"
    write_images(root / "cats", 24, seed=1)
    write_images(root / "dogs", 24, seed=2, bright=True)
    return root


def train_tiny_run(root: Path, *overrides: str) -> tuple[Path, Path]:
    """(run folder, photo folder): 12 dark 'cats' and 12 bright 'dogs' under `root`, trained through
    `catdog train --quiet` with a private cache and these `--set` overrides."""
    from click.testing import CliRunner

    from catdog.cli import main

    write_images(root / "photos" / "cats", 12, seed=1)
    write_images(root / "photos" / "dogs", 12, seed=2, bright=True)
    run = root / "run"
    sets = [arg for o in [*overrides, f"data.cache_dir={root / 'cache'}"] for arg in ("--set", o)]
    result = CliRunner().invoke(main, ["train", "--data", str(root / "photos"), "--out", str(run), "--quiet", *sets],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run, root / "photos"


def png_size(path: Path) -> tuple[int, int]:
    """The pixel size of a PNG file (and that it is one)."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny two-epoch run with a test split, shared by the tests of the pictures a run draws:
    (run folder, photo folder)."""
    root = tmp_path_factory.mktemp("pictures")
    return train_tiny_run(root, "train.epochs=2", "data.image_size=24", "train.batch_size=8", "data.test_split=0.25")

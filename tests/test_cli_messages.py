"""What the command line says: counts that add up, bad photo arguments, progress bars on terminals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from conftest import write_images

from catdog.cli import main

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def counts(output: str) -> dict[str, int]:
    first = output.splitlines()[0]
    found = {k: int(n) for n, k in re.findall(r"(\d+) (files|images|skipped|decoded now|from cache|not opened)",
                                               first)}
    return {"not opened": 0, **found}


def test_prepare_counts_add_up(tiny_data, tmp_path):
    (tiny_data / "cats" / "broken.jpg").write_bytes(b"<html>")
    (tiny_data / "dogs" / ".DS_Store").write_bytes(b"junk")
    cache = ["--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.image_size=8"]
    first = invoke("prepare", "--data", tiny_data, *cache)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == (f"{tiny_data}: 50 files (class folders): 48 images, 2 skipped; "
                                            f"49 decoded now, 0 from cache, 1 not opened")
    write_images(tiny_data / "dogs" / "new", 1)
    again = invoke("prepare", "--data", tiny_data, *cache)
    assert again.output.splitlines()[0] == (f"{tiny_data}: 51 files (class folders): 49 images, 2 skipped; "
                                            f"1 decoded now, 49 from cache, 1 not opened")
    for result in (first, again):
        c = counts(result.output)
        listed = [int(n) for n in re.findall(r"^  \w+: (\d+)$", result.output, re.M)]
        assert sum(listed) == c["images"]
        assert f"skipped {c['skipped']} files" in result.output
        assert c["images"] + c["skipped"] == c["files"] == c["decoded now"] + c["from cache"] + c["not opened"]

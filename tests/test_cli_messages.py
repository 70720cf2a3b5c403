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


BAR = ("from catdog.cli import Bar\nwith Bar('prepare') as bar:\n    for i in range(21):\n        bar(i, 20)\n"
       "print('done')\n")


def drawn(stdout_tty: bool, stderr_tty: bool) -> tuple[bytes, bytes]:
    """(what reached the pseudo-terminal, what reached the pipes) when a Bar is fed in a new process
    whose stdout and/or stderr is a pseudo-terminal: one made by os.openpty, 0 columns by 0 rows
    as `script` makes it outside a terminal, and as a CI runner's is."""
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None), env.pop("LINES", None)
    proc = subprocess.Popen([sys.executable, "-c", BAR], stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_tty else subprocess.PIPE,
                            stderr=slave if stderr_tty else subprocess.PIPE, env=env)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return tty, (out or b"") + (err or b"")


def test_the_bar_is_drawn_on_a_zero_sized_pseudo_terminal():
    tty, piped = drawn(stdout_tty=False, stderr_tty=True)
    assert b"prepare:   0%|" in tty
    assert piped == b"done\n"


def test_the_bar_is_drawn_on_stdout_when_only_stdout_is_a_terminal():
    # catdog train 2>errors.log: the bar goes to the terminal, nothing of it into the log.
    tty, piped = drawn(stdout_tty=True, stderr_tty=False)
    assert b"prepare:" in tty and b"%|" in tty and b"done" in tty
    assert piped == b""


def test_no_bar_without_a_terminal():
    _, piped = drawn(stdout_tty=False, stderr_tty=False)
    assert piped == b"done\n"


def test_predict_gives_a_dash_and_a_url_their_own_lines(trained):
    run, photos = trained
    photo = photos / "cats" / "img_000.jpg"
    result = CliRunner().invoke(main, ["predict", "--run", str(run), "-", "https://example.com/a//cat.jpg",
                                       str(photo)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "-: error: photos are not read from standard input ('-'); save the photo to a file and pass its path",
        "https://example.com/a//cat.jpg: error: a URL, not a file: catdog reads photos from disk; download it "
        "first (e.g. curl -O URL)"]
    assert re.fullmatch(rf"{re.escape(str(photo))}: (cats|dogs) \(\d\.\d{{3}}\)\n", result.stdout)
    as_json = CliRunner().invoke(main, ["predict", "--json", "--run", str(run), "-"])
    assert as_json.exit_code == 1
    assert as_json.stdout == ('{"path": "-", "error": "photos are not read from standard input (\'-\'); save the '
                              'photo to a file and pass its path"}\n')

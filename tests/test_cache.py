from __future__ import annotations

import hashlib
import json

import numpy as np
from conftest import write_images

from catdog.cache import prepare
from catdog.folders import discover
from catdog.images import load_image


def tree_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_caches_resized_pixels_and_lists_skips(tiny_data, tmp_path):
    (tiny_data / "dogs" / "broken.jpg").write_bytes(b"")
    before = tree_digest(tiny_data)
    p = prepare(discover(tiny_data), (12, 10), cache_root=tmp_path / "c")
    assert len(p.files) == 48 and p.decoded == 49
    assert p.skipped == [("dogs/broken.jpg", "empty file (0 bytes)")]
    assert "dogs/broken.jpg: empty file (0 bytes)" in (p.cache_dir / "skipped.txt").read_text()
    first = p.take(np.array([0]))[0]
    assert first.shape == (12, 10, 3) and first.dtype == np.uint8
    assert (first == load_image(tiny_data / p.files[0], (12, 10))).all()
    assert p.class_counts() == {"cats": 24, "dogs": 24}
    assert tree_digest(tiny_data) == before  # the user's files are untouched


def test_rerun_decodes_only_new_or_changed_files(tiny_data, tmp_path):
    prepare(discover(tiny_data), (8, 8), cache_root=tmp_path / "c")
    again = prepare(discover(tiny_data), (8, 8), cache_root=tmp_path / "c")
    assert again.decoded == 0
    write_images(tiny_data / "cats" / "more", 2, seed=9)
    (tiny_data / "dogs" / "img_000.jpg").unlink()
    third = prepare(discover(tiny_data), (8, 8), cache_root=tmp_path / "c")
    assert third.decoded == 2 and len(third.files) == 49
    for i, f in enumerate(third.files):
        assert (third.take(np.array([i]))[0] == load_image(tiny_data / f, (8, 8))).all()
    other_size = prepare(discover(tiny_data), (9, 9), cache_root=tmp_path / "c")
    assert other_size.decoded == 49  # a new image size rebuilds


def test_interrupted_prepare_is_never_trusted(tiny_data, tmp_path):
    p = prepare(discover(tiny_data), (8, 8), cache_root=tmp_path / "c")
    manifest = p.cache_dir / "manifest.json"
    # A run killed after writing rows but before its manifest: rows beyond the manifest are garbage.
    with open(p.cache_dir / "images.u8", "ab") as f:
        f.write(b"\xff" * 1000)
    # A manifest cut short by a crash is not trusted: everything is decoded again.
    manifest.write_text(manifest.read_text()[:50])
    again = prepare(discover(tiny_data), (8, 8), cache_root=tmp_path / "c")
    assert again.decoded == 48
    assert json.loads(manifest.read_text())["rows"] >= 48


def test_parallel_prepare_matches_serial(tmp_path):
    write_images(tmp_path / "d" / "a", 40, seed=1)
    write_images(tmp_path / "d" / "b", 40, seed=2)
    serial = prepare(discover(tmp_path / "d"), (8, 8), cache_root=tmp_path / "s", workers=1)
    parallel = prepare(discover(tmp_path / "d"), (8, 8), cache_root=tmp_path / "p", workers=2)
    assert serial.files == parallel.files
    idx = np.arange(80)
    assert (serial.take(idx) == parallel.take(idx)).all()


def test_kill_9_mid_prepare_then_rerun_completes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    write_images(tmp_path / "d" / "a", 150, size=64, seed=1)
    write_images(tmp_path / "d" / "b", 150, size=64, seed=2)
    # The progress callback holds prepare after 50 of 300 rows until the kill: it cannot finish
    # first, as it could in a fixed sleep, and leave nothing to test.
    code = ("import sys, time; from catdog.cache import prepare; from catdog.folders import discover; "
            "prepare(discover(sys.argv[1]), (32, 32), cache_root=sys.argv[2], workers=1, "
            "progress=lambda d, t: d == 50 and (print('half', flush=True), time.sleep(600)))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "d"), str(tmp_path / "c")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "half"
    (u8,) = (tmp_path / "c").rglob("images.u8")
    assert u8.stat().st_size == 50 * 32 * 32 * 3 and not list((tmp_path / "c").rglob("manifest.json"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    p = prepare(discover(tmp_path / "d"), (32, 32), cache_root=tmp_path / "c")
    assert len(p.files) == 300 and not p.skipped
    idx = np.arange(300)
    expected = np.stack([load_image(tmp_path / "d" / f, (32, 32)) for f in p.files])
    assert (p.take(idx) == expected).all()


def test_unguarded_script_stops_with_one_error_instead_of_waiting(tmp_path):
    # Spawned decoding workers import the caller's script; an unguarded prepare in it used to wait
    # for the parent's cache lock for ever.
    import subprocess
    import sys

    write_images(tmp_path / "d" / "a", 40, seed=1)
    write_images(tmp_path / "d" / "b", 40, seed=2)
    script = tmp_path / "unguarded.py"
    script.write_text("from catdog.cache import prepare\nfrom catdog.folders import discover\n"
                      f"prepare(discover({str(tmp_path / 'd')!r}), (8, 8), "
                      f"cache_root={str(tmp_path / 'c')!r}, workers=2)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert ("DataError: a decoding worker process stopped; if catdog is called from a script, put the script's "
            "calls under if __name__ == \"__main__\": (workers are spawned)") in run.stderr
    # The worker says why it stopped.
    assert "catdog.cache.prepare ran while a decoding worker was importing your script" in run.stderr

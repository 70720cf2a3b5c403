from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_images

from catdog.cache import prepare
from catdog.cache_admin import cache_entries, clear_cache, size_text
from catdog.cli import main
from catdog.errors import CacheError
from catdog.folders import discover

DAY = 86400


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty cache root that the CLI uses too."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CATDOG_CACHE", str(path))
    return path


def photos(path, count: int = 6):
    write_images(path / "cats", count, seed=1)
    write_images(path / "dogs", count, seed=2, bright=True)
    return path


def age(entry_path, days: float) -> None:
    """Make a cache look last used `days` ago."""
    then = time.time() - days * DAY
    os.utime(entry_path / "used", (then, then))


def test_list_names_folder_size_files_bytes_and_total(tmp_path, root):
    data = photos(tmp_path / "photos")
    prepare(discover(data), (8, 8), cache_root=root)
    prepare(discover(data), (12, 10), cache_root=root, resize="crop")
    entries = cache_entries(root)
    assert [(e.image_size, e.resize, e.files, e.source) for e in sorted(entries, key=lambda e: e.image_size)] == [
        ((8, 8), "squash", 12, str(data.resolve())), ((12, 10), "crop", 12, str(data.resolve()))]
    for e in entries:
        assert e.bytes == sum(f.stat().st_size for f in e.path.iterdir())
        assert e.bytes >= 12 * e.image_size[0] * e.image_size[1] * 3
        assert time.time() - e.last_used < 60
    out = cli("cache")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["photo", "folder", "image", "size", "files", "size", "last", "used"]
    assert "12x10 crop" in out.output and "8x8 squash" in out.output and "just now" in out.output
    assert lines[-1] == f"2 caches, {size_text(sum(e.bytes for e in entries))} in {root}"
    assert cli("cache", "list").output == out.output


def test_each_use_moves_last_used(tmp_path, root):
    data = photos(tmp_path / "photos")
    p = prepare(discover(data), (8, 8), cache_root=root)
    del p
    (entry,) = cache_entries(root)
    age(entry.path, 40)
    assert time.time() - cache_entries(root)[0].last_used > 39 * DAY
    prepare(discover(data), (8, 8), cache_root=root)  # all from the cache: still a use
    assert time.time() - cache_entries(root)[0].last_used < 60


def test_clear_older_than_removes_only_unused_caches(tmp_path, root):
    old, new = photos(tmp_path / "old"), photos(tmp_path / "new")
    prepare(discover(old), (8, 8), cache_root=root)
    prepare(discover(new), (8, 8), cache_root=root)
    old_entry = next(e for e in cache_entries(root) if e.source == str(old.resolve()))
    age(old_entry.path, 10)
    out = cli("cache", "clear", "--older-than", "5")
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1] == f"removed 1 cache, freed {size_text(old_entry.bytes)} in {root}"
    assert [line.split()[0][-4:] for line in out.output.splitlines()[1:-1]] == ["/old"]
    assert [e.source for e in cache_entries(root)] == [str(new.resolve())]
    assert not old_entry.path.parent.exists()  # the photo folder's last cache: its folder went too
    assert len(list((old / "cats").iterdir())) == 6  # photos are never touched


def test_clear_data_removes_that_folders_caches_even_once_it_is_gone(tmp_path, root, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = photos(tmp_path / "a"), photos(tmp_path / "b")
    for size in ((8, 8), (9, 9)):
        prepare(discover(a), size, cache_root=root)
    prepare(discover(b), (8, 8), cache_root=root)
    shutil.rmtree(a)
    out = cli("cache", "clear", "--data", "a/")  # named as the user typed it
    assert out.exit_code == 0, out.output
    assert out.output.splitlines()[-1].startswith("removed 2 caches, freed ")
    assert [e.source for e in cache_entries(root)] == [str(b.resolve())]


def test_clear_all_then_prepare_again(tmp_path, root):
    data = photos(tmp_path / "photos")
    prepare(discover(data), (8, 8), cache_root=root)
    total = cache_entries(root)[0].bytes
    out = cli("cache", "clear", "--all")
    assert out.output.splitlines()[-1] == f"removed 1 cache, freed {size_text(total)} in {root}"
    assert cache_entries(root) == [] and list(root.iterdir()) == []
    assert prepare(discover(data), (8, 8), cache_root=root).decoded == 12


def test_a_cache_in_use_is_kept_and_still_readable(tmp_path, root):
    data = photos(tmp_path / "photos")
    p = prepare(discover(data), (8, 8), cache_root=root)  # held as a training holds it
    before = p.take(np.arange(12))
    out = cli("cache", "clear", "--all")
    assert out.exit_code == 0, out.output
    assert f"kept {p.cache_dir}: in use by another catdog process" in out.output
    assert out.output.splitlines()[-1] == f"removed 0 caches, freed 0 B in {root}"
    assert (p.take(np.arange(12)) == before).all()
    del p, before
    assert len(clear_cache(root, everything=True).removed) == 1


def test_clear_never_removes_anything_outside_the_cache_or_not_its_own(tmp_path, root):
    data = photos(tmp_path / "photos")
    cdir = prepare(discover(data), (8, 8), cache_root=root).cache_dir
    outside = tmp_path / "outside"
    (outside / "8x8-squash").mkdir(parents=True)
    (outside / "8x8-squash" / "images.u8").write_bytes(b"keep")
    (outside / "precious.txt").write_text("keep")
    # A link named like a photo folder's cache, one named like a cache file, and a user's own file.
    (root / "holiday-0123456789").symlink_to(outside, target_is_directory=True)
    (root / "other-0123456789").mkdir()
    (root / "other-0123456789" / "8x8-squash").symlink_to(outside / "8x8-squash", target_is_directory=True)
    (cdir / "skipped.txt").unlink()
    (cdir / "skipped.txt").symlink_to(outside / "precious.txt")
    (cdir / "notes.txt").write_text("mine")
    (root / "README").write_text("mine too")
    assert [e.path for e in cache_entries(root)] == [cdir]  # links are not caches
    result = clear_cache(root, everything=True)
    assert result.removed == [] and [e.path for e in result.foreign] == [cdir]
    assert sorted(p.name for p in cdir.iterdir()) == ["notes.txt"]
    assert (outside / "8x8-squash" / "images.u8").read_bytes() == b"keep"
    assert (outside / "precious.txt").read_text() == "keep"
    assert (root / "README").read_text() == "mine too"
    assert (root / "holiday-0123456789").is_symlink() and (root / "other-0123456789" / "8x8-squash").is_symlink()


def test_bad_requests_each_get_one_line(tmp_path, root):
    assert cli("cache").output == f"nothing cached in {root}\n"
    missing = cli("cache", "clear")
    assert missing.exit_code == 2
    assert missing.output.splitlines()[-1] == "Error: say what to remove: --all, --data FOLDER or --older-than DAYS"
    negative = cli("cache", "clear", "--older-than", "-1")
    assert negative.exit_code == 2 and "'--older-than': -1.0 is not in the range x>=0" in negative.output
    both = cli("cache", "clear", "--all", "--older-than", "3")
    assert both.exit_code == 2 and "--all removes every cache" in both.output
    unknown = cli("cache", "clear", "--data", str(tmp_path / "nowhere"))
    assert unknown.exit_code == 1
    assert unknown.output == (f"Error: nothing is cached for {tmp_path / 'nowhere'} in {root} "
                              f"(`catdog cache` lists what is)\n")
    assert cli("cache", "clear", "--all").output == f"removed 0 caches, freed 0 B in {root}\n"
    (tmp_path / "file").write_text("x")
    not_dir = cli("cache", "--cache-dir", str(tmp_path / "file"), "list")
    assert not_dir.exit_code != 0
    with pytest.raises(CacheError, match="0 or more; got -2"):
        clear_cache(root, older_than_days=-2)
    with pytest.raises(CacheError, match="say which caches"):
        clear_cache(root)

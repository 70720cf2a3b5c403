"""Listing and clearing the prepared-image caches (`catdog cache`).

Each cache folder under the root is one photo folder at one image size and resize mode (see
catdog.cache). Clearing removes only what a cache folder is made of, by name, and never follows a
link: a file of the user's put there, or a link out of the root, stays where it is. A cache that a
process is reading (a training in progress) or writing (a prepare) is kept and reported, never
pulled from under it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from catdog.cache import USED_FILE, default_cache_root, folder_digest
from catdog.errors import CacheError, shown

# What catdog.cache writes into a cache folder; nothing else is ever removed.
CACHE_FILES = ("images.u8", "manifest.json", "manifest.json.tmp", "skipped.txt", "skipped.txt.tmp", "lock",
               USED_FILE)
# <folder name>-<10 hex digits of its path> / <height>x<width>-<resize mode>
FOLDER_NAME = re.compile(r".+-[0-9a-f]{10}")
ENTRY_NAME = re.compile(r"(\d+)x(\d+)-([a-z]+)")
DAY = 86400.0


@dataclass(frozen=True)
class CacheEntry:
    """One cache folder: one photo folder prepared at one image size and resize mode."""

    path: Path
    # The photo folder it was prepared from, as its manifest records it (None: no readable manifest).
    source: str | None
    image_size: tuple[int, int]
    resize: str
    # Photos it holds (None: no readable manifest, e.g. a prepare killed before its first one).
    files: int | None
    bytes: int
    # Seconds since the epoch of the last prepare, train or evaluate that read it.
    last_used: float

    def to_dict(self) -> dict:
        return {"path": str(self.path), "source": self.source, "image_size": list(self.image_size),
                "resize": self.resize, "files": self.files, "bytes": self.bytes, "last_used": self.last_used}


@dataclass
class Cleared:
    """What `clear_cache` removed, and what it kept because a process was using it."""

    root: Path
    removed: list[CacheEntry] = field(default_factory=list)
    in_use: list[CacheEntry] = field(default_factory=list)
    # Entries that also held files catdog did not write: catdog's files went, those (and the folder) stayed.
    foreign: list[CacheEntry] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(e.bytes for e in self.removed + self.foreign)


def cache_root(root: str | Path | None = None) -> Path:
    """`root`, else the cache root catdog prepares into (CATDOG_CACHE, XDG_CACHE_HOME/catdog or ~/.cache/catdog)."""
    return Path(root) if root is not None else default_cache_root()


def cache_entries(root: str | Path | None = None) -> list[CacheEntry]:
    """Every cache folder under the cache root, most recently used first. A missing root holds none.

    Raises:
        CacheError: the root exists but is not a folder, or cannot be read.
    """
    base = cache_root(root)
    if not base.exists():
        return []
    if not base.is_dir():
        raise CacheError(f"the cache root {shown(base)} is not a folder")
    try:
        entries = [_entry(path, m) for path, m in _entry_dirs(base)]
    except OSError as exc:
        raise CacheError(f"cannot read the cache root {shown(base)}: {exc.strerror or exc}") from None
    return sorted(entries, key=lambda e: -e.last_used)


def clear_cache(root: str | Path | None = None, *, everything: bool = False, data: str | Path | None = None,
                older_than_days: float | None = None, now: float | None = None) -> Cleared:
    """Remove cache folders: all of them, those of one photo folder, or those unused for some days.

    `data` and `older_than_days` together remove the folder's caches unused for that long. The
    photos themselves are never touched; a cache is rebuilt by the next prepare that needs it.

    Args:
        everything: remove every cache folder.
        data: the photo folder whose caches to remove (it need not exist any more).
        older_than_days: remove caches whose last use is at least this many days ago.
        now: the time to count days from (default: now).

    Raises:
        CacheError: no selector, a negative number of days, or no cache of `data`.
    """
    if not everything and data is None and older_than_days is None:
        raise CacheError("say which caches to remove: all of them, those of a data folder, or those unused for "
                         "some days")
    if everything and (data is not None or older_than_days is not None):
        raise CacheError("all caches, or some of them: not both")
    if older_than_days is not None and not older_than_days >= 0:
        raise CacheError(f"the number of days must be 0 or more; got {older_than_days}")
    base = cache_root(root)
    entries = cache_entries(base)
    if data is not None:
        folder = Path(data).expanduser().resolve()
        name = f"{folder.name or 'data'}-{folder_digest(folder, 10)}"
        entries = [e for e in entries if e.path.parent.name == name or e.source == str(folder)]
        if not entries:
            raise CacheError(f"nothing is cached for {shown(data)} in {shown(base)} (`catdog cache` lists what is)")
    if older_than_days is not None:
        cutoff = (time.time() if now is None else now) - older_than_days * DAY
        entries = [e for e in entries if e.last_used <= cutoff]
    result = Cleared(base)
    for entry in entries:
        try:
            outcome = _remove(entry)
        except OSError as exc:
            raise CacheError(f"cannot remove the cache {shown(entry.path)}: {exc.strerror or exc} "
                             f"({len(result.removed)} removed before it)") from None
        {"removed": result.removed, "in_use": result.in_use, "foreign": result.foreign}[outcome].append(entry)
    return result


def _entry_dirs(base: Path) -> Iterator[tuple[Path, re.Match]]:
    """(cache folder, its name's match) under `base`: real folders only, links are not followed."""
    for folder in sorted(base.iterdir()):
        if not FOLDER_NAME.fullmatch(folder.name) or not _is_real_dir(folder):
            continue
        for path in sorted(folder.iterdir()):
            m = ENTRY_NAME.fullmatch(path.name)
            if m and _is_real_dir(path):
                yield path, m


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def _entry(path: Path, m: re.Match) -> CacheEntry:
    size = 0
    for name in CACHE_FILES:
        with contextlib.suppress(OSError):
            st = (path / name).lstat()
            size += st.st_size if stat.S_ISREG(st.st_mode) else 0
    source, files = None, None
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        source = str(manifest["root"])
        files = sum(1 for e in manifest["entries"] if e.get("row") is not None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    # A cache from before catdog recorded its use: its last prepare (the manifest's time) is the best there is.
    used = path.lstat().st_mtime
    for name in ("manifest.json", USED_FILE):
        with contextlib.suppress(OSError):
            used = (path / name).lstat().st_mtime
    return CacheEntry(path, source, (int(m[1]), int(m[2])), m[3], files, size, used)


def _remove(entry: CacheEntry) -> str:
    """Remove one cache folder unless a process holds it: "removed", "in_use" or "foreign"."""
    path = entry.path
    held = []
    try:
        for name in ("lock", USED_FILE):  # the prepare lock first, as catdog.cache takes them
            try:
                fd = os.open(path / name, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            held.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "in_use"
        for name in CACHE_FILES:
            with contextlib.suppress(FileNotFoundError):
                target = path / name
                if not stat.S_ISDIR(target.lstat().st_mode):  # unlink removes a link, never what it names
                    target.unlink()
        try:
            path.rmdir()
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return "foreign"
            raise
        with contextlib.suppress(OSError):  # the photo folder's last cache: its folder goes too
            path.parent.rmdir()
        return "removed"
    finally:
        for fd in held:
            os.close(fd)


def size_text(n: int) -> str:
    """Bytes as people read them: 734 B, 12.3 MB, 1.1 GB (powers of 1000, as disks are sold)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def age_text(seconds: float) -> str:
    """How long ago, roughly: just now, 5 min, 3 h, 12 days."""
    if seconds < 60:
        return "just now"
    for unit, scale in (("days", DAY), ("h", 3600.0), ("min", 60.0)):
        if seconds >= scale:
            return f"{seconds / scale:.0f} {unit} ago"
    return "just now"


def _tail(path: str, limit: int = 60) -> str:
    """A long path cut at the front, where its parents are, so its own name shows."""
    text = shown(path, 10_000)
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def entries_table(entries: list[CacheEntry], root: Path, now: float | None = None) -> str:
    """The cache folders as aligned text, one line each, and their total."""
    if not entries:
        return f"nothing cached in {shown(root)}"
    now = time.time() if now is None else now
    rows = [("photo folder", "image size", "files", "size", "last used")]
    for e in entries:
        rows.append((_tail(e.source if e.source is not None else e.path.parent.name),
                     f"{e.image_size[0]}x{e.image_size[1]} {e.resize}", "?" if e.files is None else str(e.files),
                     size_text(e.bytes), age_text(now - e.last_used)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    # Text columns to the left, numbers to the right.
    lines = ["  ".join(v.ljust(w) if i in (0, 1, 4) else v.rjust(w)
                       for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    total = sum(e.bytes for e in entries)
    lines.append(f"{len(entries)} caches, {size_text(total)} in {shown(root)}")
    return "\n".join(lines)

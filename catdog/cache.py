"""The prepared-image cache: photos decoded and resized once, stored as raw uint8 rows on disk.

Layout of one cache folder (one per data folder, image size and resize mode):
  images.u8       rows of height*width*3 bytes, appended to as new photos arrive
  manifest.json   which file (with its size and mtime) is which row, and why others were skipped
  skipped.txt     the skip list, one "path: reason" line each
  lock            held (exclusively) while a prepare writes the folder
  used            its time is the last use; held (shared) while a process reads the rows, so that
                  `catdog cache clear` (catdog.cache_admin) leaves a cache in use alone

The manifest is replaced atomically (write, fsync, rename) only after the rows it names are on
disk, so a prepare killed at any moment, even by kill -9, leaves the previous manifest in charge and
a rerun finishes the job; its decoding workers die with it. A write that fails (a full disk) cuts
images.u8 back to the rows the manifest names, so nothing of the failed attempt stays behind. A
complete cache on a read-only disk is used as it is. Reads use pread, not mmap, so resident memory stays
flat however large the cache is.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from catdog.batches import targets
from catdog.errors import DataError, ImageError, replacing, shown
from catdog.folders import Found
from catdog.images import load_image

# Bumped whenever decoding changes (2: strict libjpeg-turbo decoding; 3: OpenCV resizing; 4: JPEGs
# reduced only at Pillow's draft scales), so old caches are rebuilt.
MANIFEST_VERSION = 4
Progress = Callable[[int, int], None]


class CacheArray:
    """Read-only (N, h, w, 3) uint8 rows of a cache file, fetched with pread on demand."""

    def __init__(self, path: Path, count: int, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.shape = (count, size[0], size[1], 3)
        self.row_bytes = size[0] * size[1] * 3
        self._fd: int | None = None
        self._pid = -1
        # The `used` file, share-locked while this array may be read (see catdog.cache_admin).
        self.holding: Any = None

    def __len__(self) -> int:
        return self.shape[0]

    def _file(self) -> int:
        # One descriptor per process: PyDataset workers may be forked from this one.
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        out = np.empty((len(rows),) + self.shape[1:], dtype=np.uint8)
        fd, n = self._file(), self.row_bytes
        flat = out.reshape(len(rows), n)
        i = 0
        while i < len(rows):
            # Consecutive rows are read with one call.
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            data = os.pread(fd, n * (j - i), int(rows[i]) * n)
            flat[i:j] = np.frombuffer(data, dtype=np.uint8).reshape(j - i, n)
            i = j
        return out

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "row_bytes": self.row_bytes}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state, _fd=None, _pid=-1, holding=None)


@dataclass
class Prepared:
    """A data folder after `prepare`: usable images, their labels, and what was skipped."""

    found: Found
    images: CacheArray
    rows: np.ndarray       # cache row of each usable image
    files: list[str]       # relative path of each usable image
    labels: np.ndarray     # class index of each usable image
    skipped: list[tuple[str, str]]
    cache_dir: Path
    decoded: int           # files decoded this time
    from_cache: int = 0    # files whose pixels (or reason to skip) the cache already held

    @property
    def classes(self) -> list[str]:
        return self.found.classes

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts, strict=True)}

    def row_targets(self, sigmoid: bool) -> np.ndarray:
        """Keras targets indexed by cache row, since batches are read by cache row."""
        y = targets(self.labels, len(self.classes), sigmoid)
        out = np.zeros((len(self.images),) + y.shape[1:], dtype=y.dtype)
        out[self.rows] = y
        return out

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Images at positions `idx` of the usable list."""
        return self.images[self.rows[idx]]


def default_cache_root() -> Path:
    env = os.environ.get("CATDOG_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "catdog"


def folder_digest(folder: Path, length: int) -> str:
    """A short hex digest of a folder's absolute path, telling apart folders of the same name."""
    return hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:length]


def cache_dir_for(root: Path, size: tuple[int, int], resize: str, cache_root: str | Path | None) -> Path:
    root = root.resolve()
    base = Path(cache_root) if cache_root else default_cache_root()
    return base / f"{root.name or 'data'}-{folder_digest(root, 10)}" / f"{size[0]}x{size[1]}-{resize}"


def prepare(found: Found, size: tuple[int, int], resize: str = "squash", cache_root: str | Path | None = None,
            workers: int = 0, progress: Progress | None = None) -> Prepared:
    """Decode and resize every image of `found` into the cache, reusing rows already there.

    Only files that are new or changed (size or mtime) since the last prepare are decoded.
    Nothing in the data folder is written, moved or deleted.

    Raises:
        DataError: the cache folder cannot be made, or this is a decoding worker importing an
            unguarded script (which would otherwise wait for its parent's cache lock for ever).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise DataError("catdog.cache.prepare ran while a decoding worker was importing your script; put "
                        "the script's calls under if __name__ == \"__main__\": (workers are spawned)")
    cdir = cache_dir_for(found.root, size, resize, cache_root)
    for _attempt in range(10):
        try:
            cdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the cache folder {cdir}: {exc.strerror} (set data.cache_dir)") from None
        # Two prepares of the same folder at once would append to the same rows: take turns.
        try:
            lock = open(cdir / "lock", "w")  # noqa: SIM115 (opened before `with`, to tell a read-only disk apart)
        except FileNotFoundError:
            continue  # `catdog cache clear` removed the folder in between
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            # A read-only cache needs no lock as long as nothing has to be written to it.
            prepared = _prepare_locked(found, cdir, size, resize, workers, progress, read_only=exc.strerror)
            prepared.images.holding = mark_used(cdir)
            return prepared
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _same_file(lock, cdir / "lock"):
                continue  # cleared while this prepare waited for the lock: start on a fresh folder
            prepared = _prepare_locked(found, cdir, size, resize, workers, progress)
            # Marked before the prepare lock is let go, so a clear never finds it unused in between.
            prepared.images.holding = mark_used(cdir)
            return prepared
    raise DataError(f"the cache folder {shown(cdir)} was removed 10 times while preparing; stop `catdog cache clear`")


USED_FILE = "used"


def mark_used(cdir: Path) -> Any:
    """Record now as the cache's last use, and share-lock its `used` file for as long as the
    returned file object stays open (the CacheArray holds it): `catdog cache clear` takes that
    lock exclusively, without waiting, and keeps a cache whose lock it cannot have.

    Returns None on a read-only cache without the file (nothing can clear it there either).
    """
    path = cdir / USED_FILE
    used: Any
    try:
        used = open(path, "a+b")  # noqa: SIM115 (kept open by the caller, closed with it)
    except OSError:
        try:
            used = open(path, "rb")  # noqa: SIM115
        except OSError:
            return None
    fcntl.flock(used, fcntl.LOCK_SH)
    with contextlib.suppress(OSError):  # a read-only disk keeps the time it has
        os.utime(used.fileno())
    return used


def _same_file(f: Any, path: Path) -> bool:
    """Whether the open file `f` is still the file at `path` (not removed, nor replaced)."""
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except OSError:
        return False


def write_skip_list(path: Path, skipped: list[tuple[str, str]]) -> None:
    """The skip list, one "name: reason" line per file, written atomically.

    Names are written escaped (see `shown`): a name with a newline or with bytes that are not UTF-8
    stays on one line, and the file stays UTF-8.
    """
    tmp = path.with_name(path.name + ".tmp")
    with replacing(path, tmp):
        tmp.write_text("".join(f"{shown(f, 10_000)}: {r}\n" for f, r in skipped), encoding="utf-8")


def _prepare_locked(found: Found, cdir: Path, size: tuple[int, int], resize: str, workers: int,
                    progress: Progress | None, read_only: str | None = None) -> Prepared:
    manifest_path, array_path = cdir / "manifest.json", cdir / "images.u8"
    old = _read_manifest(manifest_path, array_path, size, resize)
    old_entries = {e["file"]: e for e in old["entries"]} if old else {}
    next_row = old["rows"] if old else 0

    entries: list[dict[str, Any]] = []
    todo: list[tuple[str, int]] = []
    for rel in found.files:
        try:
            st = (found.root / rel).stat()
        except OSError:
            entries.append({"file": rel, "size": -1, "mtime": -1, "row": None, "skip": "file vanished while scanning"})
            continue
        prev = old_entries.get(rel)
        if prev and prev["size"] == st.st_size and prev["mtime"] == st.st_mtime_ns:
            entries.append(prev)
        else:
            entry = {"file": rel, "size": st.st_size, "mtime": st.st_mtime_ns, "row": next_row, "skip": None}
            todo.append((str(found.root / rel), next_row))
            entries.append(entry)
            next_row += 1

    if todo or old is None or len(entries) != len(old["entries"]):
        if read_only is not None:
            raise DataError(f"the cache folder {shown(cdir)} cannot be written ({read_only}) and {len(todo)} photos "
                            f"need decoding; set data.cache_dir to a writable folder")
        reasons = _decode_all(todo, array_path, size, resize, workers, progress,
                              keep_bytes=(old["rows"] if old else 0) * size[0] * size[1] * 3)
        # The file holds exactly the rows the manifest counts, even when the last one failed to
        # decode (else the next prepare would find it short and distrust the whole cache).
        os.truncate(array_path, next_row * size[0] * size[1] * 3)
        for entry in entries:
            if entry["row"] is not None and entry["row"] in reasons:
                entry["row"], entry["skip"] = None, reasons[entry["row"]]
        _write_manifest(manifest_path, {"version": MANIFEST_VERSION, "root": str(found.root.resolve()),
                                        "size": list(size), "resize": resize, "rows": next_row, "entries": entries})
    elif progress:
        progress(len(entries), len(entries))

    label_of = dict(zip(found.files, found.labels, strict=True))
    kept = [e for e in entries if e["row"] is not None]
    skipped = sorted([(e["file"], e["skip"]) for e in entries if e["row"] is None] + found.ignored)
    if read_only is None:
        write_skip_list(cdir / "skipped.txt", skipped)
    if not kept:
        raise DataError(f"none of the {len(entries)} files in {found.root} could be read as an image "
                        f"(see {cdir / 'skipped.txt'})")
    return Prepared(
        found=found,
        images=CacheArray(array_path, next_row, size),
        rows=np.array([e["row"] for e in kept], dtype=np.int64),
        files=[e["file"] for e in kept],
        labels=np.array([label_of[e["file"]] for e in kept], dtype=np.int64),
        skipped=skipped,
        cache_dir=cdir,
        decoded=len(todo),
        from_cache=len(entries) - len(todo) - sum(e["size"] == -1 for e in entries),
    )


def _read_manifest(path: Path, array_path: Path, size: tuple[int, int], resize: str) -> dict | None:
    """The manifest if it is whole and matches the array on disk, else None (rebuild)."""
    try:
        m = json.loads(path.read_text())
        ok = (m["version"] == MANIFEST_VERSION and tuple(m["size"]) == tuple(size) and m["resize"] == resize
              and array_path.stat().st_size >= m["rows"] * size[0] * size[1] * 3)
        return m if ok else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(path: Path, manifest: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    with replacing(path, tmp), open(tmp, "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())


_worker_state: dict = {}


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (Linux), so that a `catdog prepare`
    killed by SIGKILL or SIGTERM leaves no decoding process waiting for work for ever."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _init_worker(array_path: str, size: tuple[int, int], resize: str, threads: int = 0,
                 parent: int | None = None) -> None:
    if parent is not None:
        _die_with_parent(parent)
    if threads:
        # One process per core already: OpenCV's own threads would only contend for them.
        cv2.setNumThreads(threads)
    _worker_state.update(fd=os.open(array_path, os.O_WRONLY), size=size, resize=resize)


def _decode_one(task: tuple[str, int]) -> tuple[int, str | None]:
    path, row = task
    size = _worker_state["size"]
    try:
        pixels = load_image(path, size, _worker_state["resize"])
    except ImageError as exc:
        return row, str(exc)
    os.pwrite(_worker_state["fd"], pixels.tobytes(), row * size[0] * size[1] * 3)
    return row, None


def worker_count(workers: int, todo: int, cpus: int | None = None) -> int:
    """Decoding processes for `todo` photos: data.workers (0: one per core), never more than the
    cores, nor more than there are chunks of work to hand out."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, min(workers or cpus, cpus, math.ceil(todo / CHUNK)))


# Photos handed to a worker at a time.
CHUNK = 16


def _decode_all(todo: list[tuple[str, int]], array_path: Path, size: tuple[int, int], resize: str,
                workers: int, progress: Progress | None, keep_bytes: int = 0) -> dict[int, str]:
    """Decode `todo` into their rows of the array file; returns {row: reason} for failures.

    On a failed write (a full disk) the file is cut back to `keep_bytes`, the rows the current
    manifest names, and a DataError names the file.
    """
    fd = os.open(array_path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    try:
        return _decode_into(todo, array_path, size, resize, workers, progress)
    except OSError as exc:
        os.truncate(array_path, keep_bytes)
        raise DataError(f"cannot write the cache {shown(array_path)}: {exc.strerror or exc}; free some space or "
                        f"set data.cache_dir to another disk (the cache is as it was before)") from None


def _decode_into(todo: list[tuple[str, int]], array_path: Path, size: tuple[int, int], resize: str,
                 workers: int, progress: Progress | None) -> dict[int, str]:
    reasons: dict[int, str] = {}
    total = len(todo)
    if progress:
        progress(0, total)
    workers = worker_count(workers, total)
    # Starting processes costs more than it saves on a handful of images.
    if workers == 1 or total < 64:
        _init_worker(str(array_path), size, resize)
        results: Iterator[tuple[int, str | None]] = map(_decode_one, todo)
        pool = None
    else:
        # spawn, not fork: the caller may already have started TensorFlow's threads. An executor,
        # not a Pool: a worker that dies makes it raise rather than start another for ever.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(str(array_path), size, resize, 1, os.getpid()))
        results = pool.map(_decode_one, todo, chunksize=CHUNK)
    try:
        for done, (row, reason) in enumerate(results, 1):
            if reason is not None:
                reasons[row] = reason
            if progress:
                progress(done, total)
    except BrokenProcessPool:
        raise DataError("a decoding worker process stopped; if catdog is called from a script, put the "
                        "script's calls under if __name__ == \"__main__\": (workers are spawned)") from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        else:
            os.close(_worker_state.pop("fd"))
    # Rows must be on disk before a manifest names them.
    fd = os.open(array_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return reasons

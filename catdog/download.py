"""Fetch a well-known photo dataset: resumable download, SHA-256 check, safe extraction.

Nothing already in the target folder is overwritten or deleted: a complete earlier download is
reused, a partial one (`<archive>.part`) is resumed, and the archive is kept after extraction so
that the photos can be extracted again without the network. A download gets its final name only
after it passed its checks (the SHA-256 where one is known, and a readable archive); one that
fails them is deleted, so a rerun never trusts it.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from catdog import __version__
from catdog.errors import DownloadError
from catdog.images import is_system_file

log = logging.getLogger(__name__)

Progress = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class Dataset:
    """A downloadable archive and where its class folders are once extracted."""

    url: str
    folder: str  # relative to the target folder: the folder that holds one sub-folder per class
    sha256: str | None  # None where no published checksum was found: pass --sha256 to verify
    size: int | None  # bytes, as published; informational
    description: str


DATASETS: dict[str, Dataset] = {
    "petimages": Dataset(
        url="https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
        "kagglecatsanddogs_5340.zip",
        folder="PetImages",
        # As recorded by Hugging Face's cats_vs_dogs loader (dataset_infos.json) and, independently,
        # by gomlx's dogsvscats example.
        sha256="b7974bd00a84a99921f36ee4403f089853777b5ae8d151c76a86e64900334af9",
        size=824_887_076,
        description="Microsoft's release of the Kaggle cats-vs-dogs photos: 25,000 photos, "
        "about 790 MB, with the 0-byte and corrupt files the real world has",
    ),
    "cats_and_dogs_filtered": Dataset(
        url="https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",
        folder="cats_and_dogs_filtered/train",
        # Google publishes no checksum for this archive and none was found elsewhere.
        sha256=None,
        size=68_606_236,
        description="Google's 3,000-photo subset (2,000 train, 1,000 validation), about 65 MB",
    ),
}

# The small one: a first `catdog download` should take a minute, not an hour.
DEFAULT_DATASET = "cats_and_dogs_filtered"

CHUNK = 1 << 20
TIMEOUT_S = 30
# Photo archives expand by a few percent (JPEGs are compressed already); text-heavy archives by
# 5-10x. More than this, beyond a small floor, is a decompression bomb.
MAX_EXPANSION_RATIO = 100
MAX_EXPANSION_BYTES_FLOOR = 10 * 1024 * 1024
# Folders that zip tools on macOS add; they hold only resource forks.
JUNK_TOP_LEVEL = {"__MACOSX"}


def download(
    name: str | None,
    to: Path,
    url: str | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download and extract a dataset into `to`; return the folder that holds its class folders.

    Args:
        name: a key of DATASETS, or None for DEFAULT_DATASET (or, with `url`, any archive).
        to: the folder to download and extract into; created if missing.
        url: fetch from here instead: a mirror, or a `file://` path to an archive already on disk
            (read in place, not copied). http, https and file URLs are accepted.
        sha256: the archive's expected SHA-256 (hex); defaults to the registry's, where it has one.
        progress: called as progress(bytes_done, bytes_total_or_None) while downloading.

    Returns:
        For a registry dataset, `to / DATASETS[name].folder` (e.g. `to/PetImages` or
        `to/cats_and_dogs_filtered/train`). For any other archive, the extracted folder, descending
        through folders that hold a single folder, and into `train` where there is one.

    Raises:
        DownloadError: unknown name, unreachable URL, checksum mismatch, unsafe or broken archive,
            or extraction that would overwrite an existing file.
    """
    dataset = _dataset(name, url)
    url = url or (dataset.url if dataset else None)
    assert url is not None  # _dataset returns a dataset whenever url is None
    expected = (sha256 or (dataset.sha256 if dataset else None) or "").lower() or None
    if expected is not None and (len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected)):
        raise DownloadError(f"--sha256 must be 64 hexadecimal digits; got {sha256!r}")
    to = Path(to)
    if dataset and existing(name or DEFAULT_DATASET, to):
        log.info("%s is already extracted in %s", name or DEFAULT_DATASET, to)
        return to / dataset.folder

    # The folders made here are removed again if the download fails before anything lands in them.
    made = [p for p in (to, *to.parents) if not p.exists()]
    to.mkdir(parents=True, exist_ok=True)
    try:
        return _fetch_and_extract(url, to, dataset, expected, progress)
    except BaseException:
        for folder in made:  # deepest first; one that holds something (a .part to resume) stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _fetch_and_extract(url: str, to: Path, dataset: Dataset | None, expected: str | None,
                       progress: Progress | None) -> Path:
    archive, checked = _fetch(url, to, progress, expected)
    if expected is not None and not checked:
        actual = _sha256(archive)
        if actual != expected:
            raise DownloadError(
                f"SHA-256 of {archive} is {actual}, expected {expected}: the file is damaged or the "
                "checksum is wrong; delete it to download again"
            )
    top_level = _extract(archive, to)
    if dataset:
        folder = to / dataset.folder
        if not folder.is_dir():
            raise DownloadError(f"{archive.name} does not hold the expected folder {dataset.folder}")
        return folder
    return _class_root(to, top_level)


def existing(name: str, to: Path) -> Path | None:
    """The registry dataset's class-folder root under `to`, if it is already extracted there."""
    dataset = _dataset(name, None)
    folder = Path(to) / dataset.folder if dataset else None
    return folder if folder is not None and folder.is_dir() and any(folder.iterdir()) else None


def _dataset(name: str | None, url: str | None) -> Dataset | None:
    if name is None:
        return None if url else DATASETS[DEFAULT_DATASET]
    key = name.lower()
    if key not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or pass --url)")
    return DATASETS[key]


# --- fetching ------------------------------------------------------------------------------------


def _fetch(url: str, to: Path, progress: Progress | None, expected: str | None = None) -> tuple[Path, bool]:
    """The archive on local disk, and whether its SHA-256 was checked against `expected` here:
    a file:// path as is, else downloaded (resuming) into `to`.

    A download is checked (SHA-256 if `expected`, and that it opens as an archive) while it is
    still `<name>.part`, and deleted if it fails.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_file():
            raise DownloadError(f"no such file: {path} (from {url})")
        return path, False
    if parts.scheme not in ("http", "https"):
        raise DownloadError(f"unsupported URL {url!r}: use http://, https:// or file://")
    filename = PurePosixPath(urllib.parse.unquote(parts.path).replace("\\", "/")).name
    if filename in ("", ".", "..") or filename.startswith("."):
        filename = "download"  # a URL whose last part is not a file name (ends in /, .. or a dot)
    archive = to / filename
    if archive.is_file():
        log.info("using %s, downloaded earlier", archive)
        return archive, False
    if archive.exists():
        raise DownloadError(f"{archive} is in the way of the download (not a file); move it or choose another --to")
    part = to / (filename + ".part")
    _download(url, part, progress)
    problem = None
    if expected is not None and (actual := _sha256(part)) != expected:
        problem = f"its SHA-256 is {actual}, expected {expected}: the file is damaged or the checksum is wrong"
    elif not (zipfile.is_zipfile(part) or tarfile.is_tarfile(part)):
        problem = "it is neither a zip nor a tar archive (cut short, or an error page?)"
    if problem is not None:
        part.unlink()
        raise DownloadError(f"the download from {url} was deleted: {problem}; rerun to download again")
    os.replace(part, archive)
    return archive, expected is not None


def _download(url: str, part: Path, progress: Progress | None) -> None:
    """Fill `part` with the body at `url`, continuing from what it already holds."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"catdog/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we have: the earlier download was whole
            return
        raise DownloadError(f"download failed: HTTP {exc.code} {exc.reason} from {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(_unreachable(url, exc)) from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        resumed = response.status == 206 and _range_start(response.headers.get("Content-Range")) == have
        if resumed and total is not None:
            total += have
        # A server that ignores Range sends the whole file again: start over rather than append.
        done = have if resumed else 0
        if progress:
            progress(done, total)
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"download of {url} broke off after {done:,} bytes ({exc}); rerun to resume") from None
    if total is not None and done < total:
        raise DownloadError(f"download of {url} ended after {done:,} of {total:,} bytes; rerun to resume")


def _range_start(content_range: str | None) -> int | None:
    """The first byte of a "bytes START-END/TOTAL" header."""
    try:
        return int(content_range.split()[1].split("-")[0]) if content_range else None
    except (IndexError, ValueError):
        return None


def _unreachable(url: str, exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    return (
        f"cannot reach {url} ({reason}); check the network, or pass --url with a mirror or "
        "a file:// path to the archive downloaded elsewhere"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- extracting ----------------------------------------------------------------------------------


def _extract(archive: Path, to: Path) -> list[str]:
    """Extract `archive` into `to` unless it is already there; return its top-level entry names.

    Members are checked first and extracted into a staging folder, whose entries are then moved
    into `to`: a crash or a full disk leaves nothing half-written among the user's files.
    """
    opener = _extract_zip if zipfile.is_zipfile(archive) else _extract_tar if tarfile.is_tarfile(archive) else None
    if opener is None:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")
    names = _top_level(archive)
    present = [n for n in names if (to / n).exists() or (to / n).is_symlink()]
    if names and len(present) == len(names):
        log.info("%s is already extracted in %s", archive.name, to)
        return names
    if present:
        raise DownloadError(_clash(archive, to / present[0]))
    staging = to / f".{archive.name}.extracting"
    if staging.exists():  # left by an interrupted run of ours
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        opener(archive, staging)
        # Folders last, so that a class folder that is present was moved whole.
        for name in sorted(names, key=lambda n: (staging / n).is_dir()):
            if (to / name).exists() or (to / name).is_symlink():
                raise DownloadError(_clash(archive, to / name))
            os.replace(staging / name, to / name)
        return names
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _clash(archive: Path, path: Path) -> str:
    return f"extracting {archive.name} would overwrite {path}; move it away or choose another --to"


def _top_level(archive: Path) -> list[str]:
    """The first path component of every member, without macOS resource-fork folders."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                paths = zf.namelist()
        else:
            with tarfile.open(archive) as tf:
                paths = tf.getnames()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise DownloadError(f"{archive.name} is damaged ({exc}); delete it to download again") from None
    tops = {PurePosixPath(p.replace("\\", "/")).parts[0] for p in paths if p.strip("/.")}
    return sorted(t for t in tops - JUNK_TOP_LEVEL if t not in ("/", ".."))


def _check_member(name: str, staging: Path, archive: Path) -> Path:
    """Where a member lands; refuses absolute paths and any that resolve outside `staging`."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"unsafe archive {archive.name}: member {name!r} has an absolute path")
    target = (staging / name).resolve()
    if not target.is_relative_to(staging.resolve()):
        raise DownloadError(f"unsafe archive {archive.name}: member {name!r} would land outside {staging.parent}")
    return target


def _check_ratio(expanded: int, archive: Path) -> None:
    """Refuse an archive that expands far beyond its own size: photos hardly compress, a
    decompression bomb compresses a thousandfold."""
    packed = max(archive.stat().st_size, 1)
    if expanded > MAX_EXPANSION_BYTES_FLOOR and expanded > MAX_EXPANSION_RATIO * packed:
        raise DownloadError(f"unsafe archive {archive.name}: {packed:,} bytes would expand to {expanded:,} "
                            f"(more than {MAX_EXPANSION_RATIO}x); not extracted")


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        # zipfile writes a symlink member as a plain file holding the link's text, never as a link.
        for info in members:
            _check_member(info.filename, staging, archive)
        total = sum(i.file_size for i in members)
        _check_ratio(total, archive)
        _check_space(total, staging)
        try:
            for info in members:
                if PurePosixPath(info.filename).parts[:1] != ("__MACOSX",):
                    zf.extract(info, staging)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"{archive.name} is damaged ({exc}); delete it to download again") from None


def _extract_tar(archive: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            root = staging.resolve()
            for m in members:
                where = _check_member(m.name, staging, archive)
                if m.issym() or m.islnk():
                    base = where.parent if m.issym() else root
                    if m.linkname.startswith("/") or not (base / m.linkname).resolve().is_relative_to(root):
                        raise DownloadError(
                            f"unsafe archive {archive.name}: link {m.name!r} points outside ({m.linkname!r})"
                        )
                elif not (m.isfile() or m.isdir()):
                    raise DownloadError(f"unsafe archive {archive.name}: member {m.name!r} is a device or pipe")
            total = sum(m.size for m in members)
            _check_ratio(total, archive)
            _check_space(total, staging)
            # The "data" filter (Python 3.12, backported to 3.10.12/3.11.4) repeats these checks in
            # the standard library and strips permissions no dataset needs.
            if hasattr(tarfile, "data_filter"):
                tf.extractall(staging, members=members, filter="data")
            else:
                tf.extractall(staging, members=members)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DownloadError(f"{archive.name} is damaged ({exc}); delete it to download again") from None


def _check_space(needed: int, where: Path) -> None:
    free = shutil.disk_usage(where).free
    if needed > free:
        raise DownloadError(
            f"extracting needs {needed / 1e9:.1f} GB but only {free / 1e9:.1f} GB is free in {where.parent}"
        )


def _class_root(to: Path, top_level: list[str]) -> Path:
    """Guess the class-folder root of an unknown archive: skip single wrapping folders, prefer train/."""
    folders = [n for n in top_level if (to / n).is_dir()]
    if len(folders) != 1:
        return to
    root = to / folders[0]
    while True:
        children = [p for p in root.iterdir() if not is_system_file(p)]
        if len(children) == 1 and children[0].is_dir():
            root = children[0]
        elif (root / "train").is_dir():
            return root / "train"
        else:
            return root

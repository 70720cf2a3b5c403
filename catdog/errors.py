"""The exceptions catdog raises; the CLI turns each into one line and exit code 1."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (not an Exception: nothing may catch it as a failure)."""


# Set by the CLI once SIGTERM arrived. A library with a bare `except:` (tf2onnx has several) swallows
# the Terminated raised inside it; work about to be put in place asks here first.
terminating = threading.Event()


def raise_if_terminating() -> None:
    """Raise Terminated if SIGTERM arrived, even where the exception it raised was swallowed."""
    if terminating.is_set():
        raise Terminated


class CatdogError(Exception):
    """Base class of every error catdog reports to the user."""


class ConfigError(CatdogError):
    """A config file or override is missing, malformed or out of range."""


class DataError(CatdogError):
    """A data folder is missing, empty or not laid out as class folders."""


class ImageError(CatdogError):
    """One image (a file, or an array given to the Python API) cannot be used; the message is the reason."""


class CacheError(CatdogError):
    """The prepared-image cache cannot be listed or cleared as asked."""


class RunError(CatdogError):
    """A run directory is missing or does not hold a trained model."""


class DownloadError(CatdogError):
    """A dataset could not be fetched, verified or extracted."""


class DistributeError(CatdogError):
    """Training cannot be spread as `train.distribute` asks (backend, TF_CONFIG, start-up order)."""


class TuneError(CatdogError):
    """A search cannot run as asked: its budget, its space, its study or Optuna itself."""


class TrainingError(CatdogError):
    """Training ran but produced no usable model (loss not finite, weights never updated)."""


class PlotError(CatdogError):
    """A picture cannot be drawn: data of the wrong shape, or a user's file in the way."""


class InspectionError(CatdogError):
    """The model has no layer that can be inspected the way that was asked (e.g. no convolution)."""


class ExportError(CatdogError):
    """A run cannot be exported as asked (missing converter, existing output, failed parity)."""


class ServeError(CatdogError):
    """The server cannot start as asked (missing extra, address in use)."""


class ReviewError(CatdogError):
    """A review cannot run as asked (catdog[review] missing, its folder already holds a review)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says which epoch is saved and how to resume.

    A KeyboardInterrupt, not a CatdogError: whatever catches Ctrl-C still catches it.
    """

    def __init__(self, run_dir: str | os.PathLike | None, epochs_done: int, epochs: int) -> None:
        super().__init__(run_dir, epochs_done, epochs)
        self.run_dir, self.epochs_done, self.epochs = run_dir, epochs_done, epochs

    def __str__(self) -> str:
        if self.run_dir is None or not self.epochs_done:
            return "training interrupted before its first epoch was saved; nothing to resume (run it again)"
        return (f"training interrupted: epoch {self.epochs_done}/{self.epochs} is saved in {shown(self.run_dir)}; "
                f"continue with: catdog train --resume {shown(self.run_dir)}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def shown(name: object, limit: int = 200) -> str:
    """`name` as one printable line that round-trips: a file name or a value from the user.

    Bytes that are not UTF-8 (kept by Python as surrogate escapes) print as \\xNN, control
    characters such as a newline as \\n or \\xNN, and anything longer than `limit` characters is
    cut with an ellipsis, so that no name or value can break a line or flood the terminal.
    """
    text = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Give an OSError raised inside the block the path it concerns, where it has none (a write
    through a file object on a full disk says only "No space left on device")."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc
        raise


@contextlib.contextmanager
def replacing(path: str | os.PathLike, tmp: str | os.PathLike) -> Iterator[None]:
    """Write `tmp` inside the block, then rename it over `path`: a full disk, an error or a kill
    leaves the old `path` (or none), never half a file. An OSError inside names `path` (see
    `naming`); `tmp` is removed when anything fails."""
    try:
        with naming(path):
            yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

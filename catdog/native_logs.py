"""Keep TensorFlow's native start-up chatter off the user's terminal, and nothing else.

TensorFlow 2.19 and newer write a few lines from C++ while it loads (`WARNING: All log messages
before absl::InitializeLog() ...` and `I0000 ... oneDNN custom operations are on ...`) before any
setting it reads can stop them: TF_CPP_MIN_LOG_LEVEL is ignored for these
(tensorflow/tensorflow#100442). They are written to file descriptor 2 directly, where no Python
code can intercept them, so the CLI points fd 2 at a temporary file while `import tensorflow` runs,
then copies everything back to the real stderr except the lines TF_CPP_MIN_LOG_LEVEL=2 means to
hide (informational and warning lines of the C++ log). An error line, a Python warning or
anything else printed meanwhile still reaches the terminal, in order.

The CLI and the Python API (`catdog.<name>`, on first use) install it; CATDOG_BACKEND_LOGS=1
turns it off for both.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl's log lines: severity letter, date, time, thread, file:line] message. I and W are what
# TF_CPP_MIN_LOG_LEVEL=2 hides; E and F (errors, fatal) always pass.
_HIDDEN = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] |"
                     rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                     rb"|To enable the following instructions: .*in other operations, rebuild TensorFlow)")


def kept(text: bytes) -> bytes:
    """`text` without the native log lines that TF_CPP_MIN_LOG_LEVEL=2 means to hide."""
    return b"".join(line for line in text.splitlines(keepends=True) if not _HIDDEN.match(line))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """While inside, file descriptor 2 goes to a temporary file; on leaving, what was written
    there comes back to the real stderr without the hidden native log lines."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a daemon): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, ValueError, OSError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = kept(capture.read())
            if text:
                os.write(2, text)


class _QuietLoader(importlib.abc.Loader):
    """The real loader of the `tensorflow` package, executed inside `filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self.loader.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual and hands its import to `_QuietLoader`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Filter the native lines of TensorFlow's first import, whoever imports it (Keras, catdog)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


def quiet_library() -> None:
    """For the Python API: filter TensorFlow's first import as the CLI does, and hide its later
    informational log lines (the converter's "Starting new session") unless the user has chosen a
    TF_CPP_MIN_LOG_LEVEL. Nothing once TensorFlow is loaded, or with CATDOG_BACKEND_LOGS=1."""
    if os.environ.get("CATDOG_BACKEND_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    install()

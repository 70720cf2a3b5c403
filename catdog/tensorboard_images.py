"""The pictures catdog draws as PNG, also written into a run's TensorBoard logs (its Images tab):
the learning curves when training ends, and each evaluation's confusion matrix and top mistakes.

TensorFlow is imported inside the functions: the logs are on only where it is importable, and
importing this module must not start it (training sets devices up first; evaluate may run on ONNX).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from pathlib import Path

from catdog.callbacks import TENSORBOARD_DIR, importable
from catdog.errors import shown

# Beside Keras's train/ and validation/: one TensorBoard run holding every evaluation's pictures.
EVALUATION_LOGS = "evaluation"


def logs_on(wanted: bool | None) -> bool:
    """Whether a run's TensorBoard logs are written: the scalars' rule for train.tensorboard
    (False: never; True or None: when the tensorboard package and TensorFlow are importable)."""
    return wanted is not False and importable("tensorboard") and importable("tensorflow")


def write_images(log_dir: Path, step: int, pictures: Mapping[str, Path], key: str | None = None) -> None:
    """Write each PNG of `pictures` ({tag: file}) as an image summary at `step` into a new event
    file under `log_dir`.

    With `key`, the event files written before under the same key are removed once the new one is
    on disk: evaluating the same photos again replaces their pictures in TensorBoard instead of
    showing both at one step. Without it (training's pictures) nothing is removed.

    Raises:
        ValueError: a file is not a PNG. OSError: a file or the folder cannot be read or written.
    """
    import tensorflow as tf
    from tensorboard.plugins.image.metadata import create_summary_metadata

    # The key may hold any folder name; its digest is a safe file-name suffix.
    suffix = f".catdog-{hashlib.sha1(key.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}" if key else ""
    before = set(log_dir.glob(f"events.out.tfevents.*{suffix}.v2")) if key else set()
    images = {tag: Path(path).read_bytes() for tag, path in pictures.items()}
    log_dir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(log_dir), filename_suffix=suffix + ".v2")
    try:
        with writer.as_default():
            for tag, png in images.items():
                # What tf.summary.image writes ([width, height, PNG] under the image plugin), with
                # the PNG as plots.py drew it: tf.summary.image would decode and encode it again,
                # which takes most of a second for a picture of photos (docs/speed.md).
                width, height = png_size(png, pictures[tag])
                tf.summary.write(tag, tf.constant([str(width).encode(), str(height).encode(), png]), step=step,
                                 metadata=create_summary_metadata(display_name=None, description=None))
    finally:
        writer.close()
    for old in before:
        old.unlink(missing_ok=True)


def png_size(png: bytes, path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header (its IHDR chunk comes first).

    Raises:
        ValueError: not a PNG.
    """
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError(f"{shown(path)} is not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def evaluation_logs(run_dir: Path) -> Path:
    """Where `catdog evaluate` writes its pictures for TensorBoard: <run>/tensorboard/evaluation."""
    return run_dir / TENSORBOARD_DIR / EVALUATION_LOGS

"""Decode one image file into an RGB uint8 array of the model's size, or say why it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from catdog.errors import ImageError

# Files a photo folder collects that are never images.
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}


def is_system_file(path: Path) -> bool:
    """Hidden and operating-system files that a dataset scan skips."""
    return path.name.startswith(".") or path.name.lower() in SYSTEM_FILES


def load_image(path: str | Path, size: tuple[int, int], resize: str = "squash") -> np.ndarray:
    """Decode `path` to RGB and resize it to `size` (height, width) as a uint8 array.

    Raises:
        ImageError: the file cannot be used; the message is a one-line reason.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            height, width = size
            im = im.resize((width, height), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except OSError as exc:
        raise ImageError(f"not a readable image ({exc})") from None

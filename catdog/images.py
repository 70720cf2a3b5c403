"""Decode one image file into an RGB uint8 array of the model's size, or say why it cannot.

Real photo folders hold files of every kind: PNGs named `.jpg`, CMYK and 16-bit images, 0-byte
and truncated downloads, HTML error pages saved as photos, and headers that claim billions of
pixels. `load_image` turns each usable one into the same RGB array and rejects the rest with an
`ImageError` whose message is one short line, so that callers can list the skipped files.
"""

from __future__ import annotations

import io
import math
import re
import stat
import typing
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile

from catdog.config import ResizeMode
from catdog.errors import ImageError, first_line
from catdog.jpeg import decode_jpeg_strictly, draft_scale, jpeg_structure_problem

# Files a photo folder collects that are never images; __MACOSX is the folder of `._*` resource
# forks that macOS's Archive Utility puts in a zip.
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini", "__macosx"}

# How `load_image` fits an image to the model's size; "squash" is the seed article's plain resize.
RESIZE_MODES: tuple[str, ...] = typing.get_args(ResizeMode)

# No photo a classifier learns from needs more; a header that claims more is a broken file or a
# decompression bomb, and decoding it would take gigabytes of memory.
MAX_PIXELS = 100_000_000

# Whole files are read into memory so that JPEGs can be decoded strictly from the bytes; larger
# files go straight to Pillow, which reads them in blocks.
MAX_READ_BYTES = 64 * 1024 * 1024

# Alpha is composited on white: most transparent images are logos and clip-art drawn for a white page.
BACKGROUND = (255, 255, 255)

# EXIF orientation tag value -> the transpose that makes the picture upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112

# Pillow raises all of these on malformed input, depending on the format and where it breaks.
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError, IndexError, KeyError, ZeroDivisionError)


def is_system_file(path: str | Path) -> bool:
    """Hidden and operating-system files (`.DS_Store`, `Thumbs.db`, ...) that a dataset scan skips."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in SYSTEM_FILES


# A URL, or what is left of one once a path has folded its "//": https:/example.com/cat.jpg.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def not_a_local_file(name: str) -> str | None:
    """Why `name` (a photo given by the user) is not read: "-" and URLs name no local file.

    None when `name` may be a file, or when a file of that name exists.
    """
    if Path(name).exists():
        return None
    if name == "-":
        return "photos are not read from standard input ('-'); save the photo to a file and pass its path"
    if _URL.match(name):
        return "a URL, not a file: catdog reads photos from disk; download it first (e.g. curl -O URL)"
    return None


def load_image(path: str | Path, size: tuple[int, int], resize: str = "squash") -> np.ndarray:
    """Decode `path` to RGB and fit it to `size` (height, width) as a uint8 array.

    The format is recognised from the content, not the extension. Grayscale, palette, CMYK and
    16-bit images are converted to 8-bit RGB; transparent pixels are composited on WHITE; GIFs and
    other animations give their first frame; the EXIF orientation tag is applied so that a rotated
    phone photo comes out upright.

    Args:
        path: the image file.
        size: (height, width) of the result.
        resize: "squash" stretches the whole image to `size`; "crop" cuts the largest centered
            region of the target's aspect ratio, then resizes; "pad" resizes to fit inside `size`
            keeping the aspect ratio and fills the rest with black.

    Returns:
        A uint8 array of shape (height, width, 3).

    Raises:
        ImageError: the file cannot be used; the message is a one-line reason.
        ValueError: `resize` or `size` is not valid (a caller's bug, not a bad file).
    """
    target = _target(size, resize)
    path = Path(path)
    return _decode_strictly(path, _read(path), target, resize)


def fit_array(pixels: typing.Any, size: tuple[int, int], resize: str = "squash") -> np.ndarray:
    """`load_image` for a photo already decoded: an (H, W, 3) uint8 RGB array of any size, fitted to
    `size` (height, width) by the same crop, pad or squash and the same interpolation.

    A JPEG file larger than twice `size` is decoded at a reduced scale first (`preprocessing`), so its
    pixels can differ slightly from those of the same photo decoded whole and passed here.

    Raises:
        ImageError: not a 3-D array of 3 channels, or not uint8.
        ValueError: `resize` or `size` is not valid (a caller's bug).
    """
    target = _target(size, resize)
    check_pixels(pixels)
    return _fit(pixels, target, resize)


def check_pixels(pixels: typing.Any) -> None:
    """Refuse what `fit_array` cannot take, in one line saying what it expected and what it got.

    Raises:
        ImageError: not an (H, W, 3) uint8 NumPy array with H and W at least 1.
    """
    if not isinstance(pixels, np.ndarray):
        raise ImageError(f"expected an (height, width, 3) uint8 NumPy array of RGB pixels; got {type(pixels).__name__}")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ImageError(f"expected an (height, width, 3) array of RGB pixels; got shape {tuple(pixels.shape)}")
    if pixels.dtype != np.uint8:
        raise ImageError(f"expected uint8 pixels (0-255); got {pixels.dtype} (convert 0-255 values with "
                         f".astype(np.uint8); scale 0-1 floats by 255 first)")


def preprocessing(resize: str) -> dict[str, str]:
    """Every step `load_image` takes, in words a program without catdog can follow exactly.

    An exported artifact's contract carries this (catdog.export.contract); docs/serving.md turns it
    into code with Pillow, NumPy and OpenCV, and tests/test_recipe.py holds the two together.
    """
    _target((1, 1), resize)
    fits = {
        "squash": "the whole upright image resized to (width, height), aspect ratio not kept",
        "crop": "the largest centred region of the target's aspect ratio (its side rounded to the nearest "
                "pixel, offset (rest // 2)), then resized to (width, height)",
        "pad": "resized to fit inside (width, height) keeping the aspect ratio (sides rounded to the "
               "nearest pixel), centred (offset (rest // 2)) on black",
    }
    return {
        "order": "decode (JPEG at a reduced scale), colour to 8-bit RGB, EXIF orientation, fit and resize, "
                 "float32",
        "exif_orientation": "the EXIF Orientation tag (0x0112, as PIL.Image.getexif() reads it) is applied "
                            "after decoding, as PIL.ImageOps.exif_transpose does; missing or not 2-8: upright",
        "decode_scale": "need = the size the fit below resizes from, in the upright frame (squash: (width, "
                        "height); crop/pad: the upright image scaled by max/min(width / w, height / h), "
                        "rounded up), turned back to the stored frame for orientations 5-8; a JPEG is "
                        "decoded at 1/s, s the largest of 8, 4, 2, 1 with s <= min(W // need_w, H // need_h) "
                        "(W, H the stored size): PIL.Image.draft(\"RGB\", need)'s rule; other formats whole",
        "jpeg_decode": "libjpeg(-turbo) with the exact integer IDCT and fancy upsampling (the defaults of "
                       "Pillow and libjpeg); CMYK/YCCK JPEGs through Pillow's convert(\"RGB\")",
        "color": "8-bit RGB: grayscale, palette, CMYK and the rest by PIL convert(\"RGB\"); 16-bit "
                 "grayscale divided by 257, 32-bit integer grayscale too when its maximum is over 255, "
                 "float grayscale times 255 when its maximum is at most 1 (NaN as 0); rounded to nearest "
                 "and clipped to 0-255",
        "alpha": f"composited on {BACKGROUND} (white): RGBA, LA, PA and palette or RGB with a "
                 f"transparency entry",
        "resize": resize,
        "fit": fits[resize],
        "interpolation": "cv2.resize: INTER_AREA when the width or the height shrinks by 2 or more, else "
                         "INTER_LINEAR; none when the size already matches",
        "rounding": "the resized pixels are uint8 (OpenCV rounds to nearest), then cast to float32",
        "dtype_range": "float32 RGB 0-255, NHWC; no scaling or normalisation (it is inside the model)",
        "recipe": "docs/serving.md, 'Use an artifact from plain Python'",
    }


def _target(size: tuple[int, int], resize: str) -> tuple[int, int]:
    """(width, height) of the result, once `resize` and `size` are checked (a caller's bug if not)."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}; got {resize!r}")
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be two positive integers (height, width); got {size!r}")
    return width, height


def _decode_strictly(path: Path, data: bytes | None, target: tuple[int, int], resize: str,
                     max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`_decode` with Pillow's process-wide leniency off and its per-file warnings silenced."""
    # Another library in the process may have turned LOAD_TRUNCATED_IMAGES on; a silently
    # grey-filled half photo is worse than a skipped one, so it is off for this call only.
    truncated_ok = ImageFile.LOAD_TRUNCATED_IMAGES
    # Pillow's own warnings (odd EXIF, palette transparency) are not actionable per file, and in a
    # pool of workers they would flood the terminal; real problems are raised as ImageError.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            return _decode(path, data, target, resize, max_pixels)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok


def _decode(path: Path, data: bytes | None, target: tuple[int, int], resize: str,
            max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode, convert, orient and fit; JPEGs decode at a reduced scale where `target` allows.

    Every step is one a program with Pillow, NumPy and OpenCV can repeat exactly (the recipe in
    docs/serving.md; `catdog.export.contract` names them).
    """
    with _open(path, data, max_pixels) as im:
        orientation = _orientation(im)
        need = _decoded_size(im.size, orientation, target, resize)
        fmt = im.format or "image"
        rgb = None
        # YCbCr and grayscale JPEGs (nearly all photos) go to libjpeg-turbo, which checks the image
        # data to its end; CMYK/YCCK ones stay with Pillow, whose Adobe CMYK handling is tested.
        # Both decode at 1/2, 1/4 or 1/8 scale when the result is still at least `need`, by the
        # same rule (Pillow's `draft`); formats other than JPEG ignore the request.
        if data is not None and fmt in ("JPEG", "MPO") and im.mode in ("RGB", "L"):
            rgb = decode_jpeg_strictly(data, im.size, draft_scale(im.size, need))
        if rgb is None:
            im.draft(None, need)
            try:
                im.load()
            except _DECODE_ERRORS as exc:
                raise ImageError(_decode_reason(fmt, exc)) from None
            if data is not None and fmt in ("JPEG", "MPO"):
                problem = jpeg_structure_problem(data)
                if problem:
                    raise ImageError(problem)
            # Copied out before closing frees the decoded image.
            rgb = np.asarray(_to_rgb(im))
        if orientation in _ORIENTATION:  # rare: phone photos; Pillow knows all eight transposes
            rgb = np.asarray(Image.fromarray(rgb).transpose(_ORIENTATION[orientation]))
        return _fit(rgb, target, resize)


def _read(path: Path) -> bytes | None:
    """The file's bytes, or None when it is too large to hold in memory whole."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError("is a folder, not a file")
        if not stat.S_ISREG(st.st_mode):
            # Opening a FIFO would wait for a writer for ever; a device has no end.
            raise ImageError(f"not a regular file but {_kind(st.st_mode)}")
        nbytes = st.st_size
        if nbytes == 0:
            raise ImageError("empty file (0 bytes)")
        if nbytes > MAX_READ_BYTES:
            return None
        return path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError("broken symbolic link (its target is missing)") from None
        raise ImageError(not_a_local_file(str(path)) or "file not found (moved or deleted?)") from None
    except IsADirectoryError:
        raise ImageError("is a folder, not a file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read file: {exc.strerror or exc}") from None


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def _open(path: Path, data: bytes | None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Identify the format from the content and read the header, without decoding pixels; refuse
    a header that claims more than `max_pixels`."""
    try:
        im = Image.open(io.BytesIO(data) if data is not None else path)
    except Image.DecompressionBombError as exc:
        match = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = f"{int(match.group(1)):,}" if match else "too many"
        raise ImageError(f"decompression bomb: header claims {claimed} pixels") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (unrecognised format)") from None
    except FileNotFoundError:
        raise ImageError("file not found (moved or deleted?)") from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"unreadable image header: {first_line(exc)}") from None
    pixels = im.width * im.height
    if pixels > max_pixels:
        im.close()
        limit = f" (at most {max_pixels:,} accepted)" if max_pixels != MAX_PIXELS else ""
        raise ImageError(f"decompression bomb: header claims {pixels:,} pixels{limit}")
    if pixels == 0:
        im.close()
        raise ImageError("image has no pixels (0 width or height)")
    return im


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag, or 1 (upright) when absent or unreadable."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        # A broken EXIF block should not cost a photo whose pixels are fine.
        return 1
    return value if isinstance(value, int) else 1


def _decoded_size(
    size: tuple[int, int], orientation: int, target: tuple[int, int], resize: str
) -> tuple[int, int]:
    """The smallest stored (width, height) from which `_fit` can still make `target` at full detail.

    A JPEG decoder that scales in the DCT domain can stop there: decoding fewer pixels is the
    largest speed-up available for big photos and small models.
    """
    width, height = size
    if orientation in (5, 6, 7, 8):  # stored sideways: the upright width is the stored height
        width, height = height, width
    tw, th = target
    if resize == "squash":
        need = (tw, th)
    else:
        scale = (max if resize == "crop" else min)(tw / width, th / height)
        need = (math.ceil(width * scale), math.ceil(height * scale))
    if orientation in (5, 6, 7, 8):
        need = (need[1], need[0])
    return max(1, need[0]), max(1, need[1])


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB, compositing transparency on the white background."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_l(im).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    try:
        return im.convert("RGB")
    except ValueError:
        raise ImageError(f"unsupported colour mode {mode}") from None


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float grayscale image to 8 bits.

    Pillow's own conversion clips at 255, which turns most 16-bit photos white.
    """
    a = np.asarray(im)
    if im.mode == "F":
        # Float images come either as 0..1 or as 0..255; anything else is clipped.
        a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
        a = np.nan_to_num(a)
    elif im.mode.startswith("I;16") or a.max(initial=0) > 255:
        # 16-bit range, including 32-bit "I" images that Pillow uses for 16-bit data.
        a = np.clip(a.astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _fit(rgb: np.ndarray, target: tuple[int, int], resize: str) -> np.ndarray:
    """Resize an upright RGB array to `target` (width, height) by the chosen mode."""
    tw, th = target
    height, width = rgb.shape[:2]
    if resize == "squash":
        return _resize(rgb, tw, th)
    if resize == "crop":
        if width * th > height * tw:  # wider than the target: cut the sides
            keep = max(1, min(width, round(height * tw / th)))
            left = (width - keep) // 2
            rgb = rgb[:, left : left + keep]
        else:  # taller: cut top and bottom
            keep = max(1, min(height, round(width * th / tw)))
            top = (height - keep) // 2
            rgb = rgb[top : top + keep]
        return _resize(rgb, tw, th)
    scale = min(tw / width, th / height)
    iw, ih = max(1, min(tw, round(width * scale))), max(1, min(th, round(height * scale)))
    canvas = np.zeros((th, tw, 3), dtype=np.uint8)
    top, left = (th - ih) // 2, (tw - iw) // 2
    canvas[top : top + ih, left : left + iw] = _resize(rgb, iw, ih)
    return canvas


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`rgb` resized to (width, height) with OpenCV, as a new array.

    Shrinking by 2 or more averages each output pixel's whole area (no aliasing); anything gentler
    interpolates linearly, as TensorFlow's and Keras's own resizing do. OpenCV rather than Pillow
    because its resize is several times faster (docs/speed.md).
    """
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return np.array(rgb, dtype=np.uint8)
    shrink = w >= 2 * width or h >= 2 * height
    return cv2.resize(np.ascontiguousarray(rgb), (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _decode_reason(fmt: str, exc: BaseException) -> str:
    """One stable line for a decoding failure, so that skip lists group by reason."""
    message = first_line(exc)
    if "truncated" in message:
        return f"truncated {fmt}: image file is truncated"
    # Drop per-file details such as "(137 bytes not processed)".
    message = re.sub(r"\s*\([^)]*\)$", "", message)
    return f"corrupt {fmt}: {message}"


def load_image_bytes(data: bytes, size: tuple[int, int], resize: str = "squash",
                     max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """`load_image` for an image held in memory, such as an upload; same result, same errors.

    Args:
        max_pixels: the largest width x height a header may claim; a server takes less than
            MAX_PIXELS so that one upload cannot hold hundreds of megabytes of pixels.

    Raises:
        ImageError: the bytes are not a usable image; the message is a one-line reason.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    return _decode_strictly(Path("upload"), bytes(data), _target(size, resize), resize, max_pixels)

"""Strict JPEG decoding: libjpeg-turbo's verdict on every photo, not just its header.

Split from catdog.images, which calls `decode_jpeg_strictly` for ordinary photos and
`jpeg_structure_problem` for the JPEGs Pillow still decodes.
"""

from __future__ import annotations

import re

import numpy as np
import simplejpeg

from catdog.errors import ImageError, first_line

# Pillow ignores libjpeg's warnings, so a JPEG damaged mid-stream decodes into a garbled picture.
# YCbCr and grayscale JPEGs are therefore decoded by libjpeg-turbo with strict=True (its first
# warning is an error); a file refused for its metadata alone is decoded again without it. The rest
# (CMYK, very large files, subsampling TurboJPEG cannot name) go to Pillow after the byte-level check
# of `jpeg_structure_problem`. What is detected and what cannot be: docs/reliability.md.

# libjpeg-turbo can scale by any n/8 while decoding, but only 1/2, 1/4 and 1/8 are asked for: they
# are the scales Pillow's `Image.draft` decodes at, so a program with Pillow alone gets the same
# pixels (docs/serving.md's recipe; the speed this costs: docs/speed.md).
DRAFT_SCALES = (8, 4, 2, 1)
# Below one 8x8 block on both sides, a smaller n/8 scale can give the same size as 1/s, and
# TurboJPEG would take it; Pillow decodes those (tiny) pictures at Pillow's scale instead.
_BLOCK = 8


def draft_scale(size: tuple[int, int], need: tuple[int, int]) -> int:
    """The JPEG decoding scale 1/s for a stored `size` (width, height): Pillow's `Image.draft` rule.

    s is the largest of 8, 4, 2, 1 with s <= min(width // need_width, height // need_height), so the
    decoded ceil(width / s) x ceil(height / s) is still at least `need`.
    """
    most = min(size[0] // max(1, need[0]), size[1] // max(1, need[1]))
    return next(s for s in DRAFT_SCALES if s <= most or s == 1)


def decode_jpeg_strictly(data: bytes, size: tuple[int, int], scale: int) -> np.ndarray | None:
    """Decode a YCbCr or grayscale JPEG to RGB at 1/`scale`, rejecting any damage to its image data.

    Args:
        data: the file's bytes.
        size: its stored (width, height), from the header.
        scale: 1, 2, 4 or 8 (`draft_scale`); the result is ceil(width / scale) x ceil(height / scale).

    Returns:
        The RGB pixels (height, width, 3), or None for a JPEG whose chroma subsampling TurboJPEG
        cannot name, or one too small to scale exactly as Pillow does (the caller decodes it with
        Pillow).

    Raises:
        ImageError: libjpeg-turbo's verdict, as one stable line.
    """
    if scale > 1 and max(size) < _BLOCK:
        return None
    try:
        pixels = _turbo_decode(data, size, scale)
    except ValueError as exc:
        message = first_line(exc)
        if "subsampling level" in message:
            return None
        bare = _without_metadata(data)
        if bare is None:
            raise ImageError(_libjpeg_reason(message)) from None
        try:
            pixels = _turbo_decode(bare, size, scale)
        except ValueError as again:
            # The image data is what is left, so its verdict is the one to report.
            raise ImageError(_libjpeg_reason(first_line(again))) from None
    return pixels


def _turbo_decode(data: bytes, size: tuple[int, int], scale: int) -> np.ndarray:
    # simplejpeg takes the smallest n/8 scale whose result is at least min_width x min_height, and
    # only if it reduces by at least min_factor: for a picture of 8 pixels or more on a side, 1/scale.
    return simplejpeg.decode_jpeg(
        data,
        colorspace="RGB",
        strict=True,
        # The exact IDCT and upsampling, as Pillow decodes: the same pixels.
        fastdct=False,
        fastupsample=False,
        min_width=-(-size[0] // scale),
        min_height=-(-size[1] // scale),
        min_factor=scale,
    )


def _libjpeg_reason(message: str) -> str:
    """One stable line for libjpeg-turbo's verdict; Pillow's words where the case is the same."""
    message = re.sub(r"^tj\w*\(\): ", "", message)  # the TurboJPEG function that passed it on
    if message.startswith("Premature end of JPEG file"):
        return "truncated JPEG: image file is truncated"
    restart = re.match(r"Corrupt JPEG data: found marker 0xd([0-7]) instead of RST([0-7])", message)
    if restart:
        return f"corrupt JPEG: restart marker {restart[1]} where {restart[2]} belongs"
    message = re.sub(r"^(Corrupt JPEG data|Warning): ", "", message)
    # The count differs from file to file; skip lists group by reason.
    message = re.sub(r"^\d+ extraneous bytes", "extraneous bytes", message)
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return f"corrupt JPEG: {message}"


def _without_metadata(data: bytes) -> bytes | None:
    """`data` without junk between header segments and without application and comment segments.

    Adobe's APP14, which says how colour is coded, is kept; the frame, tables and everything from
    the first scan on are unchanged. None when there is nothing to remove or the header is broken.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    kept, pos, end = [b"\xff\xd8"], 2, len(data)
    while True:
        match = _NEXT_MARKER.search(data, pos)  # bytes skipped here are junk, and dropped
        if match is None:
            return None
        marker = match.group(1)[0]
        if marker == 0xFF:  # a fill byte before the marker
            pos = match.start() + 1
            continue
        start, pos = match.start(), match.end()
        if marker == 0xDA:
            kept.append(data[start:])
            break
        if 0xD0 <= marker <= 0xD9 or marker == 0x01 or pos + 2 > end:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            return None
        if not ((0xE0 <= marker <= 0xEF and marker != 0xEE) or marker == 0xFE):
            kept.append(data[start : pos + length])
        pos += length
    bare = b"".join(kept)
    return bare if len(bare) < len(data) else None


# Markers that may follow an entropy-coded scan: tables, another scan, restart interval, number of
# lines, comments, application data, end of image.
_AFTER_SCAN = {0xC4, 0xCC, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)}
# A marker: 0xFF then anything but the 0x00 that stuffs a literal 0xFF into entropy-coded data.
# One 0xFF, not "\xff+", keeps the search simple; fill bytes are skipped by matching again.
_NEXT_MARKER = re.compile(rb"\xff([^\x00])")


def jpeg_structure_problem(data: bytes) -> str | None:
    """A one-line reason when the JPEG's marker structure is broken, else None.

    Data after the end-of-image marker is allowed: cameras and phones append thumbnails and
    depth maps there.
    """
    if not data.startswith(b"\xff\xd8"):
        return "corrupt JPEG: no start-of-image marker"
    pos, end = 2, len(data)
    while True:
        match = _NEXT_MARKER.match(data, pos)
        if match is None:
            match = _NEXT_MARKER.search(data, pos)  # skip junk between segments, as libjpeg does
            if match is None:
                return "truncated JPEG: no end-of-image marker"
        marker, pos = match.group(1)[0], match.end()
        if marker == 0xFF:  # a fill byte before the marker
            pos -= 1
            continue
        if marker == 0xD9:
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # standalone markers carry no length
            continue
        if pos + 2 > end:
            return "truncated JPEG: no end-of-image marker"
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            return "truncated JPEG: a segment runs past the end of the file"
        pos += length
        if marker == 0xDA:
            pos, problem = _skip_scan(data, pos)
            if problem:
                return problem


def _skip_scan(data: bytes, pos: int) -> tuple[int, str | None]:
    """Walk one scan's entropy-coded data; return where its closing marker starts, or a problem."""
    expected_restart = 0
    while True:
        match = _NEXT_MARKER.search(data, pos)
        if match is None:
            return len(data), "truncated JPEG: no end-of-image marker"
        marker = match.group(1)[0]
        if marker == 0xFF:  # a fill byte before the marker
            pos = match.start() + 1
            continue
        if 0xD0 <= marker <= 0xD7:
            if marker - 0xD0 != expected_restart:
                return 0, (
                    f"corrupt JPEG: restart marker {marker - 0xD0} where {expected_restart} belongs"
                )
            expected_restart = (expected_restart + 1) % 8
            pos = match.end()
            continue
        if marker not in _AFTER_SCAN:
            return 0, f"corrupt JPEG: invalid marker 0xFF{marker:02X} in image data"
        return match.start(), None

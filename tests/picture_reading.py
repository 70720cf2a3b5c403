"""Reading numbers back from the pictures catdog draws: which colour-map value each pixel of a PNG
shows, where the blocks of one colour lie, and the images in TensorBoard event files. For tests that
check a picture's content, not just its size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def read_rgb(path: Path) -> np.ndarray:
    """The PNG's (height, width, 3) uint8 RGB pixels."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def colormap_index(rgb: np.ndarray, cmap: str, tolerance: float = 3.0) -> np.ndarray:
    """For each pixel, the index (0-255) of the colour of matplotlib's `cmap` it shows; -1 where it
    shows none of them (text, background, lines, antialiased edges)."""
    from matplotlib import colormaps

    table = (colormaps[cmap](np.arange(256))[:, :3] * 255).astype(np.float32)
    # Each distinct colour of the picture (a few thousand) against the table, not every pixel.
    colours, where = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    distance = np.abs(colours[:, None, :].astype(np.float32) - table[None]).max(axis=-1)
    nearest = distance.argmin(axis=1)
    nearest[distance.min(axis=1) > tolerance] = -1
    return nearest[where.ravel()].reshape(rgb.shape[:2])


def runs(present: np.ndarray, min_length: int = 1) -> list[tuple[int, int]]:
    """The [start, stop) ranges where a 1-d boolean array is True, at least `min_length` long."""
    edges = np.diff(np.concatenate([[0], present.astype(np.int8), [0]]))
    return [(int(a), int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
            if b - a >= min_length]


def blocks(index: np.ndarray, min_pixels: int) -> dict[int, tuple[float, float, int]]:
    """Colour-map values shown on at least `min_pixels` pixels (a cell of a matrix, not a colour
    bar's one row): {index: (centre row, centre column, pixel count)}."""
    found = {}
    values, counts = np.unique(index[index >= 0], return_counts=True)
    for value, count in zip(values, counts, strict=True):
        if count >= min_pixels:
            rows, cols = np.nonzero(index == value)
            found[int(value)] = (float(rows.mean()), float(cols.mean()), int(count))
    return found


def matrix_cells(path: Path, n: int, cmap: str = "Blues") -> np.ndarray:
    """The colour-map index each cell of an n x n matrix picture (imshow of `cmap`) shows, as an
    (n, n) array: the block of cells is found as the rows and columns mostly painted in the colour
    map's colours (a colour bar beside it is too thin), cut into n x n, and each cell's most
    common index read (its text is not a colour-map colour)."""
    index = colormap_index(read_rgb(path), cmap)
    values = [v for v in blocks(index, 2000)]
    painted = np.isin(index, values)
    (left, right), = runs(painted.sum(axis=0) > 50, min_length=20)
    (top, bottom), = runs(painted[:, left:right].sum(axis=1) > (right - left) // 2, min_length=20)
    cells = np.zeros((n, n), np.int64)
    edges_y, edges_x = np.linspace(top, bottom, n + 1).astype(int), np.linspace(left, right, n + 1).astype(int)
    for i in range(n):
        for j in range(n):
            cell = index[edges_y[i]:edges_y[i + 1], edges_x[j]:edges_x[j + 1]]
            shown, counts = np.unique(cell[cell >= 0], return_counts=True)
            cells[i, j] = shown[counts.argmax()]
    return cells


def percent_index(percent: np.ndarray) -> np.ndarray:
    """The colour-map index matplotlib paints a value in [0, 100] with (vmin 0, vmax 100, 256 colours)."""
    return np.clip((np.asarray(percent, dtype=np.float64) / 100 * 256).astype(np.int64), 0, 255)


def tensorboard_images(logs: Path) -> dict[str, list[tuple[int, tuple[int, int]]]]:
    """{tag: [(step, (width, height)), ...]} of every image summary in the event files of one
    TensorBoard folder (train/, evaluation/), in file order; the size as recorded and as the PNG is."""
    import tensorflow as tf

    found: dict[str, list[tuple[int, tuple[int, int]]]] = {}
    for events in sorted(logs.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "images":
                    continue
                width, height, png = tf.make_ndarray(value.tensor)
                with Image.open(io.BytesIO(png)) as im:
                    assert im.format == "PNG" and im.size == (int(width), int(height)), (value.tag, im.size)
                found.setdefault(value.tag, []).append((event.step, im.size))
    return found

"""Each picture is written as a PNG of the size it promises, from tiny made-up inputs, and shows
what it was given: numbers are read back from the pixels (tests/picture_reading.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from picture_reading import colormap_index, matrix_cells, percent_index, read_rgb, runs
from PIL import Image

from catdog import plots
from catdog.inspection import LayerMaps

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)


def size_of(path: Path) -> tuple[int, int]:
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def assert_size(path: Path, width_in: float, height_in: float) -> None:
    width, height = size_of(path)
    assert abs(width - width_in * plots.DPI) <= 1 and abs(height - height_in * plots.DPI) <= 1, (width, height)


def pixels(height: int = 24, width: int = 24) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_learning_curves(tmp_path):
    history = {"loss": [0.9, 0.7, 0.6], "val_loss": [0.8, 0.7, 0.75],
               "accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.55, 0.6, 0.58]}
    path = plots.learning_curves(history, tmp_path / "curves.png", best_epoch=2)
    assert path == tmp_path / "curves.png"
    assert_size(path, 11, 4.2)


def test_learning_curves_after_one_epoch_without_validation(tmp_path):
    assert_size(plots.learning_curves({"loss": [0.7]}, tmp_path / "c.png", None), 11, 4.2)


def test_confusion_matrix(tmp_path):
    path = plots.confusion_matrix(np.array([[5, 1], [2, 4]]), ["cats", "dogs"], tmp_path / "sub" / "cm.png")
    assert_size(path, 6, 5)


def test_confusion_matrix_many_classes_and_an_empty_row(tmp_path):
    matrix = rng.integers(0, 9, (7, 7))
    matrix[3] = 0
    assert_size(plots.confusion_matrix(matrix, [f"class {i}" for i in range(7)], tmp_path / "cm.png"),
                2.4 + 1.1 * 7, 1.6 + 1.1 * 7)


def test_confusion_matrix_must_fit_the_class_names(tmp_path):
    with pytest.raises(plots.PlotError, match=r"confusion matrix must be 3x3 for 3 class names; got shape \(2, 2\)"):
        plots.confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "cm.png")


def test_top_mistakes(tmp_path):
    titles = [f"true: cat / pred: dog (0.9{i})" for i in range(5)]
    path = plots.top_mistakes([pixels() for _ in titles], titles, tmp_path / "m.png")
    assert_size(path, 2.6 * 3, 2.9 * 2 + 0.5)  # 5 photos: 3 columns, 2 rows


def test_top_mistakes_none(tmp_path):
    assert_size(plots.top_mistakes([], [], tmp_path / "m.png"), 6, 1.5)


def test_filters_grid_colour(tmp_path):
    path = plots.filters_grid(rng.normal(size=(5, 5, 3, 10)), tmp_path / "f.png")
    assert_size(path, 6, 1.3 * 3 + 1.3)  # 10 filters: 4 columns, 3 rows


def test_filters_grid_grayscale_for_other_depths(tmp_path):
    path = plots.filters_grid(rng.normal(size=(3, 3, 16, 6)), tmp_path / "f.png")
    assert_size(path, 6, 1.3 * 2 + 1.3)  # 6 filters: 3 columns, 2 rows


def layer(count: int, kind: str = "conv") -> LayerMaps:
    maps = rng.random((12, 12, count)).astype(np.float32)
    maps[..., 0] = 0.0  # a silent filter
    return LayerMaps("conv", kind, "Conv2D", f"5x5 x{count}", maps.shape, maps)


def test_activation_grid(tmp_path):
    path = plots.activation_grid(layer(10), tmp_path / "a.png")
    assert_size(path, 1.8 * 4 + 1.0, 1.95 * 3 + 1.2)


def test_activation_grid_caps_the_tiles(tmp_path):
    path = plots.activation_grid(layer(70, "pool"), tmp_path / "a.png")
    assert_size(path, 1.8 * 8 + 1.0, 1.95 * 8 + 1.2)  # 64 of 70 maps in 8x8


def test_activation_title_reads_like_the_article():
    maps = LayerMaps("conv", "conv", "Conv2D", "5x5 x10", (296, 296, 10), np.zeros((1, 1, 1)))
    assert plots.activation_title(maps) == "conv: Conv2D 5x5 x10 → 296×296×10"


def test_input_image(tmp_path):
    assert_size(plots.input_image(pixels(16, 20), tmp_path / "i.png"), 5, 5.4)


def test_heatmap_overlay(tmp_path):
    heatmap = rng.random((16, 20)).astype(np.float32)
    assert_size(plots.heatmap_overlay(pixels(16, 20), heatmap, "dog", 0.97, tmp_path / "g.png", "HiResCAM"), 10, 5)
    with pytest.raises(plots.PlotError, match=r"heat map must have the image's size \(16, 20\); got \(4, 4\)"):
        plots.heatmap_overlay(pixels(16, 20), np.zeros((4, 4)), "dog", 0.97, tmp_path / "g.png", "HiResCAM")


def rows(count: int) -> list[dict]:
    return [{"name": f"layer_{i}", "type": "Conv2D", "output_shape": "(None, 8, 8, 4)", "params": 112}
            for i in range(count)]


def test_model_diagram(tmp_path):
    assert_size(plots.model_diagram(rows(6), tmp_path / "d.png"), 7, 0.9 + 0.85 * 6 + 0.2)


def test_model_diagram_elides_the_middle_of_a_deep_model(tmp_path):
    shown = plots.MAX_DIAGRAM_ROWS + 1  # both halves and one "... more layers ..." box
    assert_size(plots.model_diagram(rows(200), tmp_path / "d.png"), 7, 0.9 + 0.85 * shown + 0.2)


def test_importing_plots_does_not_import_matplotlib():
    # `catdog --help` and `predict` stay fast only if drawing is the sole importer of matplotlib.
    code = "import sys, catdog.plots, catdog.cli; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def residual_rows() -> list[dict]:
    """A stem, a residual unit with a 1x1 projection on its shortcut, and one without."""
    spec = [("image", []), ("conv", ["image"]),
            ("a", ["conv"]), ("proj", ["conv"]), ("a2", ["a"]), ("proj_bn", ["proj"]), ("b", ["a2"]),
            ("add", ["proj_bn", "b"]),
            ("c", ["add"]), ("d", ["c"]), ("add2", ["add", "d"]), ("output", ["add2"])]
    return [{"name": n, "type": "Conv2D", "output_shape": "8×8×4", "params": 1, "inputs": i} for n, i in spec]


def test_diagram_layout_puts_a_projection_beside_the_main_path_and_keeps_skips():
    place, edges = plots.diagram_layout(residual_rows())
    # The longer way through the unit (a, a2, b) is the main path; the projection stands beside it.
    assert place == {"image": (0, 0), "conv": (1, 0), "a": (2, 0), "proj": (2, 1), "a2": (3, 0), "proj_bn": (3, 1),
                     "b": (4, 0), "add": (5, 0), "c": (6, 0), "d": (7, 0), "add2": (8, 0), "output": (9, 0)}
    assert ("conv", "proj") in edges and ("proj_bn", "add") in edges and ("b", "add") in edges
    assert ("add", "add2") in edges  # the identity shortcut: from level 5 to level 8 in column 0


def test_diagram_layout_of_rows_without_inputs_is_a_chain():
    place, edges = plots.diagram_layout(rows(4))
    assert place == {f"layer_{i}": (i, 0) for i in range(4)}
    assert edges == [("layer_0", "layer_1"), ("layer_1", "layer_2"), ("layer_2", "layer_3")]


def test_model_diagram_with_a_branch_is_one_column_wider(tmp_path):
    # 10 levels; the projection's column adds 4.7 inches.
    assert_size(plots.model_diagram(residual_rows(), tmp_path / "d.png"), 7 + 4.7, 0.9 + 0.85 * 10 + 0.2)


def test_model_diagram_elides_the_middle_levels_of_a_deep_branched_model(tmp_path):
    deep = residual_rows()[:-1] + [{"name": f"l{i}", "type": "Dense", "output_shape": "4", "params": 1,
                                    "inputs": ["add2" if i == 0 else f"l{i - 1}"]} for i in range(100)]
    shown = plots.MAX_DIAGRAM_ROWS + 1
    assert_size(plots.model_diagram(deep, tmp_path / "d.png"), 7 + 4.7, 0.9 + 0.85 * shown + 0.2)


# --- What the pictures show, read back from their pixels.

def test_confusion_matrix_colours_each_cell_by_its_row_percentage(tmp_path):
    # Rows are true classes: 9 of 10 cats right, 7 of 10 dogs; no two cells alike, and transposing
    # or normalising by column would change every colour but the second diagonal cell's.
    matrix = np.array([[9, 1], [3, 7]])
    read = matrix_cells(plots.confusion_matrix(matrix, ["cats", "dogs"], tmp_path / "cm.png"), 2)
    np.testing.assert_allclose(read, percent_index([[90, 10], [30, 70]]), atol=1)
    three = np.array([[3, 0, 1], [2, 2, 0], [0, 0, 5]])
    read = matrix_cells(plots.confusion_matrix(three, ["a", "b", "c"], tmp_path / "cm3.png"), 3)
    np.testing.assert_allclose(read, percent_index(100 * three / three.sum(axis=1, keepdims=True)), atol=1)


def line_pixels(rgb: np.ndarray, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the pixels drawn in `colour` (a matplotlib default line colour)."""
    return np.nonzero(np.abs(rgb.astype(np.int64) - colour).max(axis=-1) <= 10)


def test_learning_curves_draw_both_curves_going_the_way_the_numbers_go(tmp_path):
    history = {"loss": [1.0, 0.8, 0.6, 0.5, 0.45, 0.4, 0.38, 0.35],
               "val_loss": [0.9, 0.85, 0.8, 0.78, 0.8, 0.82, 0.85, 0.9],
               "accuracy": [0.5, 0.6, 0.65, 0.7, 0.74, 0.78, 0.8, 0.83],
               "val_accuracy": [0.5, 0.55, 0.6, 0.62, 0.6, 0.6, 0.59, 0.58]}
    rgb = read_rgb(plots.learning_curves(history, tmp_path / "curves.png", best_epoch=4))
    half = rgb.shape[1] // 2
    training, validation, kept = (31, 119, 180), (255, 127, 14), (44, 160, 44)  # C0, C1, tab:green
    for panel, falls in ((rgb[:, :half], True), (rgb[:, half:], False)):  # loss falls, accuracy rises
        for colour in (training, validation, kept):
            assert len(line_pixels(panel, colour)[0]) > 50, colour  # each curve and the kept epoch's line
        rows, cols = line_pixels(panel, training)
        # Down the picture (rows grow) as the epochs go right for the loss, up for the accuracy.
        slope = np.corrcoef(cols, rows)[0, 1]
        assert (slope > 0.5) if falls else (slope < -0.5), slope


def test_activation_grid_draws_one_tile_per_map_showing_that_map(tmp_path):
    # Map i (from 1) is faint noise with its peak at row i, column 3i mod 12; map 0 is silent.
    maps = np.zeros((12, 12, 10), np.float32)
    for i in range(1, 10):
        maps[..., i] = np.random.default_rng(i).random((12, 12)) * 0.2
        maps[i, 3 * i % 12, i] = 1.0
    path = plots.activation_grid(LayerMaps("conv", "conv", "Conv2D", "3x3 x10", maps.shape, maps), tmp_path / "a.png")
    index = colormap_index(read_rgb(path), "viridis")
    painted = index >= 0
    columns = runs(painted.sum(axis=0) > 30, min_length=50)  # the colour bar is narrower
    rows = runs(painted[:, columns[0][0]:columns[-1][1]].sum(axis=1) > 30, min_length=50)
    tiles = [index[top:bottom, left:right] for top, bottom in rows for left, right in columns
             if (index[top:bottom, left:right] >= 0).mean() > 0.9]
    assert len(tiles) == 10
    assert (tiles[0] == 0).all()  # silent: one colour, the lowest
    for i, tile in enumerate(tiles[1:], start=1):
        peak_rows, peak_cols = np.nonzero(tile == 255)  # the map's own maximum, the top colour
        height, width = tile.shape
        assert (int(peak_rows.mean() * 12 / height), int(peak_cols.mean() * 12 / width)) == (i, 3 * i % 12)


def test_heatmap_overlay_is_red_where_the_map_is_hot(tmp_path):
    # On a grey photo the overlay's colours are known: 55% grey and 45% of jet's colour.
    image = np.full((40, 60, 3), 128, np.uint8)
    heatmap = np.zeros((40, 60), np.float32)
    heatmap[25:40, 0:20] = 1.0  # bottom left
    rgb = read_rgb(plots.heatmap_overlay(image, heatmap, "dog", 0.9, tmp_path / "h.png", "HiResCAM"))
    hot, cold = (0.55 * 128 + 0.45 * np.array([[128, 0, 0], [0, 0, 128]])).round()
    hot_rows, hot_cols = line_pixels(rgb, tuple(hot.astype(int)))
    cold_rows, cold_cols = line_pixels(rgb, tuple(cold.astype(int)))
    # The overlay is where the cold colour is; the hot pixels fill its bottom-left quarter (by area
    # a quarter of the photo: 15 of 40 rows, 20 of 60 columns).
    top, bottom = cold_rows.min(), cold_rows.max() + 1
    left, right = cold_cols.min(), cold_cols.max() + 1
    assert len(hot_rows) > 0
    assert hot_rows.min() >= top + 0.6 * (bottom - top) and hot_rows.max() < bottom
    assert hot_cols.min() >= left and hot_cols.max() < left + 0.4 * (right - left)
    share = len(hot_rows) / ((bottom - top) * (right - left))
    assert 0.8 * (15 * 20) / (40 * 60) < share < 1.2 * (15 * 20) / (40 * 60), share

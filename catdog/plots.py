"""Pictures of training, evaluation and inspection, drawn with matplotlib into PNG files.

Pure drawing: every function takes plain arrays and lists, writes one PNG at `path` and returns
the path. Matplotlib is imported inside `_figure`, so importing this module costs nothing and
`catdog --help` and `predict` never load it. Figures use the Agg canvas directly (no pyplot), so
drawing leaves no global state behind, and they are saved without tight cropping: a figure's
pixel size is exactly its `figsize` times DPI.

matplotlib is imported inside functions: it takes long to load, and `catdog --help` and
`predict` never draw.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from catdog.errors import PlotError, replacing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from catdog.inspection import LayerMaps

DPI = 100
# Beyond this many maps a grid becomes unreadable thumbnails.
MAX_MAPS = 64
# Beyond this many layers the diagram shows the first and last half of this many.
MAX_DIAGRAM_ROWS = 60


def _figure(width: float, height: float, constrained: bool = True) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError("drawing pictures needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Drawn beside and renamed over: a full disk or a kill leaves the old picture, never half a PNG.
    tmp = path.with_name(f".{path.name}.tmp")
    with replacing(path, tmp):
        fig.savefig(tmp, dpi=DPI, format="png")
    return path


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(n, max_cols, math.ceil(math.sqrt(n * 1.5))))
    return math.ceil(max(n, 1) / cols), cols


def _tile(ax: Any, title: str | None = None, fontsize: float = 9) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def learning_curves(history: dict[str, list[float]], path: str | Path, best_epoch: int | None = None,
                    kept_last: bool = False) -> Path:
    """Loss and accuracy per epoch, training and validation, the kept epoch marked.

    Args:
        history: Keras' History.history: "loss", "accuracy", "val_loss", "val_accuracy" (any
            may be missing).
        best_epoch: 1-based epoch whose weights were kept, or None. Written at 1100x420 pixels.
        kept_last: the kept epoch is the last one (train.keep_best off), not the best.
    """
    fig = _figure(11, 4.2)
    panels = [("loss", "Loss (lower is better)"), ("accuracy", "Accuracy (higher is better)")]
    axes = fig.subplots(1, 2)
    for ax, (key, title) in zip(axes, panels, strict=True):
        for prefix, label, style in (("", "training", "-"), ("val_", "validation", "--")):
            values = history.get(prefix + key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, marker="o", markersize=4, label=label)
        if best_epoch is not None and ax.lines:  # an empty panel says "no ... recorded" instead
            ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=2,
                       label=f"{'last' if kept_last else 'best'} epoch ({best_epoch}), kept")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Learning curves")
    return _save(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """Counts and row-normalised percentages; true class on rows, predicted on columns.

    Written at (2.4 + 1.1 n) x (1.6 + 1.1 n) inches for n classes, at least 600x500 pixels.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise PlotError(f"confusion matrix must be {n}x{n} for {n} class names; got shape {matrix.shape}")
    totals = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    fig = _figure(max(6.0, 2.4 + 1.1 * n), max(5.0, 1.6 + 1.1 * n))
    ax = fig.subplots()
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fontsize = 11 if n <= 4 else 9 if n <= 8 else 7
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]}\n{percent[i, j]:.1f}%", ha="center", va="center",
                    fontsize=fontsize, color="white" if percent[i, j] > 55 else "black")
    ax.set_xticks(range(n), class_names, rotation=30 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Confusion matrix: {matrix.sum()} photos, {accuracy:.1%} correct")
    bar = fig.colorbar(image, ax=ax, shrink=0.85)
    bar.set_label("% of the photos of the true class (each row sums to 100%)")
    return _save(fig, path)


def top_mistakes(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path) -> Path:
    """The most confidently wrong photos in a grid, each titled with its file name above
    "true: cat / pred: dog (0.97)".

    At most 4 columns of 2.6 x 2.9 inch tiles; no images gives a one-line "no mistakes" picture.
    """
    if len(images) != len(titles):
        raise PlotError(f"top_mistakes needs one title per image; got {len(images)} images and {len(titles)} titles")
    if not images:
        fig = _figure(6, 1.5)
        fig.text(0.5, 0.5, "No mistakes: every photo was classified correctly.", ha="center", va="center")
        return _save(fig, path)
    rows, cols = _grid(len(images), 4)
    fig = _tiled(images, titles, rows, cols, (2.6, 2.9), fontsize=10)
    fig.suptitle(f"Top {len(images)} mistakes: the most confidently wrong predictions")
    return _save(fig, path)


def _tiled(images: Sequence[np.ndarray], titles: Sequence[str], rows: int, cols: int,
           tile: tuple[float, float], fontsize: int):
    """A figure of `rows` x `cols` tiles of `tile` inches, the images in order, each titled; the
    tiles left over are blank."""
    fig = _figure(tile[0] * cols, tile[1] * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, image, title in zip(axes[:len(images)], images, titles, strict=True):
        ax.imshow(np.asarray(image, dtype=np.uint8))
        _tile(ax, title, fontsize=fontsize)
    for ax in axes[len(images):]:
        ax.set_axis_off()
    return fig


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str], path: str | Path, heading: str,
                  empty: str, columns: int = 6) -> Path:
    """Photos in rank order, row by row, each titled (e.g. its file, given and suggested label);
    `empty` is the one line drawn when there are none. A pair of copies takes two tiles side by
    side when `columns` is even."""
    if len(images) != len(titles):
        raise PlotError(f"contact_sheet needs one title per image; got {len(images)} images and {len(titles)} titles")
    if not images:
        fig = _figure(6, 1.5)
        fig.text(0.5, 0.5, empty, ha="center", va="center")
        return _save(fig, path)
    cols = min(columns, len(images))
    rows = math.ceil(len(images) / cols)
    fig = _tiled(images, titles, rows, cols, (2.2, 2.5), fontsize=8)
    fig.suptitle(heading)
    return _save(fig, path)


def filters_grid(filters: np.ndarray, path: str | Path) -> Path:
    """The first convolution's filters as small tiles, each scaled to its own range.

    RGB filters (in = 3) are shown in colour; any other input depth as the mean over input
    channels in grayscale. Up to 10 columns of 1.2-inch tiles.
    """
    filters = np.asarray(filters, dtype=np.float32)
    if filters.ndim != 4:
        raise PlotError(f"filters must be (k, k, in, n); got shape {filters.shape}")
    k1, k2, depth, count = filters.shape
    shown = min(count, MAX_MAPS)
    rows, cols = _grid(shown, 10)
    colour = depth == 3
    fig = _figure(max(6.0, 1.2 * cols + (0 if colour else 1.0)), 1.3 * rows + 1.3)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    image = None
    for i, ax in enumerate(axes[:shown]):
        w = filters[..., i] if colour else filters[..., i].mean(axis=-1)
        low, high = float(w.min()), float(w.max())
        w = (w - low) / (high - low) if high > low else np.full_like(w, 0.5)
        image = ax.imshow(w, cmap=None if colour else "gray", vmin=0, vmax=1, interpolation="nearest")
        _tile(ax, f"filter {i}")
    assert image is not None  # a convolution has at least one filter
    for ax in axes[shown:]:
        ax.set_axis_off()
    more = f" (showing {shown} of {count})" if shown < count else ""
    fig.suptitle(f"First convolution layer: {count} filters of {k1}×{k2}×{depth}{more}")
    if colour:
        note = ("Weights as colours, each filter scaled to its own range:\n"
                "a bright red cell weighs red strongly; a dark cell weighs all colours negatively.")
    else:
        note = f"Mean over the {depth} input channels;\neach filter scaled to its own range."
        bar = fig.colorbar(image, ax=axes.tolist(), shrink=0.8, ticks=[0, 1])
        bar.ax.set_yticklabels(["lowest", "highest"])
        bar.set_label("weight")
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(h_pad=0.1)
    fig.supxlabel(note, fontsize=9)
    return _save(fig, path)


def activation_title(maps: LayerMaps) -> str:
    """E.g. "conv: Conv2D 5x5 x10 → 296×296×10"."""
    shape = "×".join(str(s) for s in maps.shape)
    return f"{maps.name}: {maps.layer_type} {maps.detail} → {shape}".replace("  ", " ")


def maps_description(maps: LayerMaps) -> str:
    """What the maps are, for the subtitle: after which activation, or before what."""
    if maps.kind == "pool":
        return "each filter's map after pooling"
    if maps.kind != "conv":
        return "each channel"
    if maps.activation == "linear":
        # E.g. a ResNet convolution: batch norm and the activation are layers of their own after it.
        before = f", before {' and '.join(maps.after)}" if maps.after else " (no activation)"
        return f"each filter's raw response{before}: values can be negative"
    if maps.activation:
        return f"each filter's response after the {maps.activation} activation"
    return "each filter's response"


def activation_grid(layer_maps: LayerMaps, path: str | Path) -> Path:
    """One layer's activation maps, one tile per filter, each tile scaled to its own range.

    Each map gets its own scale so a faint filter still shows what it picks out; the tile title
    gives the map's largest value, so weak and silent filters stay recognisable. Up to
    MAX_MAPS tiles in at most 8 columns of 1.8-inch tiles.

    The tiles share one set of axes placed in inches: an axes per tile with a computed layout
    took most of `catdog show`'s time on a network with dozens of layers (docs/speed.md).
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    maps = np.asarray(layer_maps.maps, dtype=np.float32)
    count = maps.shape[-1]
    shown = min(count, MAX_MAPS)
    rows, cols = _grid(shown, 8)
    width, height = max(6.5, 1.8 * cols + 1.0), 1.95 * rows + 1.2
    fig = _figure(width, height, constrained=False)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downwards, in inches
    ax.set_axis_off()
    cmap = colormaps["viridis"]
    # The tiles centred in the space left of the colour bar, below the title.
    left = (width - 1.0 - 1.8 * cols) / 2 + 0.05
    map_h, map_w = maps.shape[:2]
    for i in range(shown):
        r, c = divmod(i, cols)
        low, high = float(maps[..., i].min()), float(maps[..., i].max())
        # A tile 1.55 inches on its longer side, keeping the map's aspect ratio.
        scale = 1.55 / max(map_h, map_w)
        w, h = map_w * scale, map_h * scale
        x = left + c * 1.8 + (1.8 - w) / 2
        y = 1.05 + r * 1.95 + 0.3 + (1.55 - h) / 2
        ax.imshow(maps[..., i], cmap=cmap, vmin=low, vmax=high if high > low else low + 1,
                  extent=(x, x + w, y + h, y), interpolation="nearest")
        ax.text(x + w / 2, y - 0.06, f"filter {i}: " + (f"max {high:.3g}" if high > low else
                                                      "silent" if high == 0 else "flat"),
                ha="center", va="bottom", fontsize=9)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # imshow resets the limits to its extent
    what = maps_description(layer_maps)
    more = f"; showing {shown} of {count}" if shown < count else ""
    # About 10 pixels a character at the title's size: wrap what would run past the figure's edges.
    chars = int(width * DPI / 10)
    fig.suptitle(f"{activation_title(layer_maps)}\n" + textwrap.fill(f"({what}{more})", chars), y=1 - 0.1 / height,
                 va="top")
    bar_axes = fig.add_axes((1 - 0.85 / width, 0.15, 0.2 / width, 0.7 * (height - 1.2) / height))
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=bar_axes, ticks=[0, 1])
    bar.ax.set_yticklabels(["lowest", "highest"])
    raw = layer_maps.kind == "conv" and layer_maps.activation == "linear"
    bar.set_label(f"{'response' if raw else 'activation'}, relative to each map's own range")
    return _save(fig, path)


def input_image(image: np.ndarray, path: str | Path) -> Path:
    """The photo as the network receives it (after resizing), with its size. 500x540 pixels."""
    image = np.asarray(image, dtype=np.uint8)
    fig = _figure(5, 5.4)
    ax = fig.subplots()
    ax.imshow(image)
    _tile(ax)
    ax.set_title(f"Input: {image.shape[0]}×{image.shape[1]} pixels, 3 colour channels")
    return _save(fig, path)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, label: str, probability: float,
                    path: str | Path, method: str) -> Path:
    """The photo beside the photo under its heat map, captioned with the `method` that made the
    map (catdog.inspection.HEATMAP_METHOD). 1000x500 pixels."""
    image = np.asarray(image, dtype=np.uint8)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != image.shape[:2]:
        raise PlotError(f"heat map must have the image's size {image.shape[:2]}; got {heatmap.shape}")
    fig = _figure(10, 5)
    left, right = fig.subplots(1, 2)
    left.imshow(image)
    _tile(left, "photo", fontsize=11)
    right.imshow(image)
    overlay = right.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    _tile(right, f"{method} heat map over the photo", fontsize=11)
    # The bar shows the colour map at full strength, not washed out by the overlay's alpha.
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(overlay.norm, overlay.cmap), ax=right, shrink=0.9, ticks=[0, 0.5, 1])
    bar.ax.set_yticklabels(["none", "some", "most"])
    bar.set_label(f"{method}: where the evidence for {label} is")
    fig.suptitle(f"Prediction: {label} ({probability:.2f})")
    return _save(fig, path)


def _box_colour(layer_type: str) -> str:
    t = layer_type.lower()
    for key, colour in (("conv", "#cfe2f3"), ("pool", "#d9ead3"), ("dense", "#fce5cd"),
                        ("input", "#eeeeee"), ("normal", "#fff2cc")):
        if key in t:
            return colour
    return "#f3f3f3"


def diagram_layout(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, tuple[int, int]], list[tuple[str, str]]]:
    """Where each layer's box goes: {name: (level, column)}, and the edges (from, to) between boxes.

    A layer's "inputs" (names of the layers feeding it) make the graph; a row without the key
    takes the row before it. The longest path from the input runs down column 0; every other
    layer (a ResNet's projection, say) sits in a column to the right, at the level of the
    longest path that reaches it, so a branch stands beside the layers it runs parallel to.
    """
    names = [str(r["name"]) for r in rows]
    known = set(names)
    inputs: dict[str, list[str]] = {}
    for i, r in enumerate(rows):
        given = r.get("inputs") if "inputs" in r else names[i - 1:i]
        inputs[names[i]] = [n for n in (given or []) if n in known and n != names[i]]
    depth: dict[str, int] = {}
    for name in names:  # Keras lists a model's layers in an order where inputs come first
        depth[name] = 1 + max((depth.get(n, 0) for n in inputs[name]), default=-1)
    main: set[str] = set()
    node: str | None = max(reversed(names), key=lambda n: depth[n]) if names else None
    while node is not None:
        main.add(node)
        node = max(inputs[node], key=lambda n: depth[n], default=None)
    place: dict[str, tuple[int, int]] = {}
    taken: set[tuple[int, int]] = set()
    for name in names:
        column = 0
        if name not in main:
            column = 1
            while (depth[name], column) in taken:
                column += 1
        place[name] = (depth[name], column)
        taken.add(place[name])
    edges = [(source, name) for name in names for source in inputs[name]]
    return place, edges


def model_diagram(rows: Sequence[dict[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Layers as boxes (name, type, output shape, parameters) with arrows along the data flow.

    Args:
        rows: one dict per layer with keys name, type, output_shape (str), params (int) and,
            optionally, inputs (the names of the layers feeding it; default: the row before).
            The main path runs top to bottom; branches stand in columns to its right; a skip
            connection is an arrow around the left of the boxes it skips (see diagram_layout).
            More than MAX_DIAGRAM_ROWS levels are shown as the first and last halves.
    Written 7 inches wide plus 4.7 per branch column, and 0.85 inch per level.
    """
    rows = list(rows)
    total = sum(int(r.get("params", 0)) for r in rows)
    heading = title or f"{len(rows)} layers, {total:,} parameters"
    place, edges = diagram_layout(rows)
    levels = 1 + max((level for level, _ in place.values()), default=-1)
    columns = 1 + max((column for _, column in place.values()), default=0)
    half = MAX_DIAGRAM_ROWS // 2
    elided = levels > MAX_DIAGRAM_ROWS

    def shown_at(level: int) -> int | None:
        if not elided or level < half:
            return level
        return level - (levels - 2 * half) + 1 if level >= levels - half else None

    step, box_h, top = 0.85, 0.62, 0.9
    shown_levels = 2 * half + 1 if elided else levels
    width, height = 7.0 + 4.7 * (columns - 1), top + step * shown_levels + 0.2
    fig = _figure(width, height, constrained=False)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # y grows downwards, in inches
    ax.set_axis_off()
    ax.text(width / 2, 0.4, heading, ha="center", va="center", fontsize=13, weight="bold")

    def box(column: int) -> tuple[float, float]:  # (left, width) of a column's boxes
        return (0.5, 6.0) if column == 0 else (6.9 + 4.7 * (column - 1), 4.3)

    boxes: dict[str, tuple[float, float, float]] = {}  # name -> left, top, width
    for r in rows:
        level, column = place[str(r["name"])]
        row = shown_at(level)
        if row is None:
            continue
        x, w = box(column)
        y = top + row * step
        boxes[str(r["name"])] = (x, y, w)
        ax.add_patch(_rounded_box(x, y, w, box_h, _box_colour(str(r.get("type", "")))))
        kind = f"  ({r['type']})" if r.get("type") else ""
        ax.text(x + 0.2, y + 0.2, f"{r['name']}{kind}", va="center", fontsize=10, weight="bold")
        ax.text(x + 0.2, y + 0.45, f"output {r.get('output_shape', '')}", va="center", fontsize=9)
        ax.text(x + w - 0.2, y + 0.45, f"{int(r.get('params', 0)):,} params", va="center", ha="right", fontsize=9)
    if elided:
        y = top + half * step
        ax.add_patch(_rounded_box(0.5, y, 6.0, box_h, _box_colour("")))
        ax.text(0.7, y + 0.2, f"… {levels - 2 * half} more levels of layers …", va="center", fontsize=10, weight="bold")
        before = [n for n, (level, column) in place.items() if column == 0 and level in (half - 1, levels - half)]
        boxes["…"] = (0.5, y, 6.0)
        edges = edges + [(before[0], "…"), ("…", before[-1])] if len(before) == 2 else edges
    arrow = {"arrowstyle": "-|>", "color": "#555555", "shrinkA": 0, "shrinkB": 0}
    for source, target in edges:
        if source not in boxes or target not in boxes:
            continue
        (x0, y0, w0), (x1, y1, w1) = boxes[source], boxes[target]
        if abs(x0 - x1) < 1e-9 and abs(y1 - y0 - step) < 1e-9:  # the next box down
            ax.annotate("", xy=(x1 + w1 / 2, y1), xytext=(x0 + w0 / 2, y0 + box_h), arrowprops=arrow)
        elif abs(x0 - x1) < 1e-9:  # a skip connection, around the left of the boxes it skips
            side = x0 - 0.28
            ax.plot([x0, side, side], [y0 + box_h / 2, y0 + box_h / 2, y1 + box_h / 2], color="#555555", lw=1)
            ax.annotate("", xy=(x1, y1 + box_h / 2), xytext=(side, y1 + box_h / 2), arrowprops=arrow)
        # Lines into a branch leave low and run left of those out of it, which arrive high, so a
        # box that joins one branch and feeds the next shows two separate paths.
        elif x1 > x0:  # into a branch: from the right side across, then down into its top
            x, y = x1 + 0.35 * w1, y0 + 0.75 * box_h
            ax.plot([x0 + w0, x], [y, y], color="#555555", lw=1)
            ax.annotate("", xy=(x, y1), xytext=(x, y), arrowprops=arrow)
        else:  # out of a branch: down, then across into the right side of the box it joins
            x, y = x0 + 0.65 * w0, y1 + 0.25 * box_h
            ax.plot([x, x], [y0 + box_h, y], color="#555555", lw=1)
            ax.annotate("", xy=(x1 + w1, y), xytext=(x, y), arrowprops=arrow)
    return _save(fig, path)


def _rounded_box(x: float, y: float, w: float, h: float, colour: str) -> Any:
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.08",
                          facecolor=colour, edgecolor="#666666", linewidth=1)


def compared_curves(names: Sequence[str], histories: Sequence[dict[str, list[float]]], path: str | Path) -> Path:
    """Several runs' learning curves overlaid: one colour a run, training solid, validation dashed.

    Written at 1100x420 pixels, like `learning_curves`.
    """
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(names))]
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for name, history, colour in zip(names, histories, colours, strict=True):
            for prefix, kind, style in (("", "training", "-"), ("val_", "validation", "--")):
                values = history.get(prefix + key)
                if values:
                    ax.plot(np.arange(1, len(values) + 1), [np.nan if v is None else v for v in values], style,
                            color=colour, marker="o", markersize=3, label=f"{textwrap.shorten(name, 40)} ({kind})")
        ax.set_title(f"{key.capitalize()} ({'lower' if key == 'loss' else 'higher'} is better)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Learning curves compared")
    return _save(fig, path)


# How each trial state is drawn in the search picture: (marker, colour, legend label).
_TRIAL_MARKS = {"complete": ("o", "C0", "complete"), "pruned": ("x", "C3", "pruned (last epoch reported)"),
                "stopped": ("s", "C7", "stopped by the budget (last epoch)"), "failed": ("v", "k", "failed")}


def search(values: Sequence[float], states: Sequence[str], params: Mapping[str, Sequence[Any]], log_keys: set[str],
           path: str | Path, ranges: Mapping[str, tuple[float, float]] | None = None) -> Path:
    """A search's trials: the objective per trial with the best so far, then the objective against
    each searched key (log scale where the key was searched on one, over its searched `ranges`; a
    list's choices by position). The best complete trial is starred in every panel.

    `values` are NaN where a trial reported nothing. Written at 1100 pixels wide, 380 per row of panels.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = 1 + len(params)
    rows, cols = math.ceil(panels / 3), min(panels, 3)
    fig = _figure(11, 3.8 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    v = np.array(values, dtype=float)
    trials = np.arange(len(v))
    ax = axes[0]
    for state, (marker, colour, label) in _TRIAL_MARKS.items():
        pick = np.array([s == state for s in states], dtype=bool) & np.isfinite(v)
        if pick.any():
            ax.plot(trials[pick], v[pick], marker, color=colour, label=label, linestyle="none")
    done = np.where(np.array([s == "complete" for s in states], dtype=bool), v, np.nan)
    best = int(np.nanargmax(done)) if np.isfinite(done).any() else None
    if best is not None:
        ax.plot([best], [v[best]], "*", color="C1", markersize=14, label=f"best (trial {best})", zorder=1)
        so_far = np.fmax.accumulate(np.where(np.isfinite(done), done, -np.inf))
        ax.step(trials, np.where(np.isfinite(so_far), so_far, np.nan), where="post", color="C2", label="best so far")
    ax.set_title("Objective per trial (higher is better)")
    ax.set_xlabel("trial")
    ax.set_ylabel("val_accuracy on the held-out photos")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trial reported a value", ha="center", va="center", transform=ax.transAxes)
    for ax, (key, column) in zip(axes[1:], params.items(), strict=False):
        numeric = all(c is None or (isinstance(c, (int, float)) and not isinstance(c, bool)) for c in column)
        if numeric:
            x = np.array([np.nan if c is None else c for c in column], dtype=float)
        else:
            labels = sorted({str(c) for c in column if c is not None})
            x = np.array([np.nan if c is None else labels.index(str(c)) for c in column], dtype=float)
            ax.set_xticks(range(len(labels)), [textwrap.shorten(s, 24) for s in labels], fontsize=7,
                          rotation=20 if len(labels) > 2 else 0)
        for state, (marker, colour, _label) in _TRIAL_MARKS.items():
            pick = np.array([s == state for s in states], dtype=bool) & np.isfinite(v) & np.isfinite(x)
            if pick.any():
                ax.plot(x[pick], v[pick], marker, color=colour, linestyle="none")
        if best is not None and np.isfinite(x[best]):
            ax.plot([x[best]], [v[best]], "*", color="C1", markersize=14, zorder=1)
        if key in log_keys and numeric:
            ax.set_xscale("log")
            # Searched ranges span a decade or so: ticks at 1, 2 and 5 of each decade, plainly written.
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _pos: f"{t:.2g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        if numeric and ranges and key in ranges:
            ax.set_xlim(*ranges[key])
        ax.set_title(textwrap.shorten(key, 50))
        ax.set_xlabel(key.rpartition(".")[2])
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"Search: {len(v)} trials, {int(np.isfinite(done).sum())} complete")
    return _save(fig, path)

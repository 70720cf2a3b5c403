"""`catdog show`: pictures of what a trained run's network sees in one photo (the photo at the
model's input size, the first convolution's filters, each layer's activations, the HiResCAM heat map).

catdog.inspection (which imports Keras) is imported inside `show`, so that importing this module
does not start Keras.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from catdog import plots
from catdog.errors import ImageError, PlotError, shown
from catdog.images import load_image, not_a_local_file
from catdog.prediction import answer
from catdog.runs import load_run


@dataclass
class ShowResult:
    """What `catdog show` predicted for one photo and the pictures it wrote."""

    image: Path
    run_dir: Path
    label: str
    probability: float
    probabilities: dict[str, float]
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def _file_name(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^\w.-]+", "_", stem)
    name, n = f"{base}.png", 2
    while name in taken:
        name, n = f"{base}-{n}.png", n + 1
    taken.add(name)
    return name


def show(image: str | Path, run: str | Path | None = None, out: str | Path | None = None) -> ShowResult:
    """Draw what a trained run's network sees in one photo.

    Writes input.png (the photo at the model's input size), filters.png (the first convolution's
    filters), one activations-<layer>.png per convolution and pooling layer, and heatmap.png (HiResCAM:
    where the evidence for the predicted class lies).

    Args:
        image: the photo.
        run: the run folder (default: the latest run).
        out: the folder for the pictures (default: <run>/show/<photo name>/, or <photo name>-2/,
            -3/, ... when that folder exists: each call keeps its own pictures). A file of `out`
            that catdog would write is never overwritten; pick another folder.

    Raises:
        ImageError: the photo cannot be read (the message names it).
        PlotError: `out` already holds one of the pictures.
        RunError: no usable run folder.
    """
    if (reason := not_a_local_file(str(image))) is not None:
        raise ImageError(f"{image}: {reason}")
    r = load_run(run)
    image = Path(image)
    try:
        pixels = load_image(image, r.config.data.image_size, r.config.data.resize)
    except ImageError as exc:
        raise ImageError(f"{shown(image)}: {exc}") from None
    from catdog import inspection  # Keras: after the run and the photo are known to be good

    maps = inspection.feature_maps(r.model, pixels)
    heatmap, index, probabilities = inspection.hires_cam(r.model, pixels)

    taken: set[str] = set()
    names = {"input": _file_name("input", taken), "filters": _file_name("filters", taken)}
    layer_files = [_file_name(f"activations-{m.name}", taken) for m in maps]
    names["heatmap"] = _file_name("heatmap", taken)
    if out is not None:
        out_dir = Path(out)
        clash = sorted(n for n in [*names.values(), *layer_files] if (out_dir / n).exists())
        if clash:
            raise PlotError(f"--out {out_dir} already holds {', '.join(clash)}; pick another folder")
    else:
        out_dir = new_folder(r.dir / "show", re.sub(r"[^\w.-]+", "_", image.stem))

    label, probability, every = answer(r.classes, probabilities, index)
    try:
        files = [plots.input_image(pixels, out_dir / names["input"]),
                 plots.filters_grid(inspection.first_conv_filters(r.model), out_dir / names["filters"])]
        files += [plots.activation_grid(m, out_dir / name) for m, name in zip(maps, layer_files, strict=True)]
        files.append(plots.heatmap_overlay(pixels, heatmap, label, probability, out_dir / names["heatmap"],
                                           inspection.HEATMAP_METHOD))
    except BaseException:
        if out is None:  # the folder is this call's own: nothing half drawn stays behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return ShowResult(image, r.dir, label, probability, every, out_dir, files)


def new_folder(parent: Path, name: str) -> Path:
    """A folder made now: parent/name, else parent/name-2, -3, ... (never one that exists)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise PlotError(f"{shown(parent)} already holds 9999 folders named {name}-N; pass --out DIR")

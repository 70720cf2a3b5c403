"""The pictures the commands draw: `show` for one photo, the evaluation pictures and the summary's
diagram. Glue between run folders and reports and catdog.plots (the learning curves are drawn by a
training callback, catdog.callbacks).

catdog.inspection (which imports Keras) is imported inside `show`: evaluation imports this module
without needing a model's internals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catdog import plots
from catdog.errors import ImageError, PlotError, shown
from catdog.images import load_image
from catdog.runs import load_run

if TYPE_CHECKING:
    from catdog.evaluation import EvalReport
    from catdog.summary import Summary

CONFUSION_FILE = "confusion_matrix.png"
MISTAKES_FILE = "top_mistakes.png"
# Three rows of four: enough to see a pattern in the failures, small enough to look at each.
TOP_MISTAKES = 12


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
    filters), one activations-<layer>.png per convolution and pooling layer, and gradcam.png (where
    the evidence for the predicted class lies).

    Args:
        image: the photo.
        run: the run folder (default: the latest run).
        out: the folder for the pictures (default: <run>/show/<photo name>/). A file of that
            folder that catdog would write is never overwritten; pick another folder.

    Raises:
        ImageError: the photo cannot be read.
        PlotError: `out` already holds one of the pictures.
        RunError: no usable run folder.
    """
    from catdog import inspection

    r = load_run(run)
    image = Path(image)
    pixels = load_image(image, r.config.data.image_size, r.config.data.resize)
    maps = inspection.feature_maps(r.model, pixels)
    heatmap, index, probabilities = inspection.grad_cam(r.model, pixels)

    taken: set[str] = set()
    names = {"input": _file_name("input", taken), "filters": _file_name("filters", taken)}
    layer_files = [_file_name(f"activations-{m.name}", taken) for m in maps]
    names["gradcam"] = _file_name("gradcam", taken)
    out_dir = Path(out) if out is not None else r.dir / "show" / re.sub(r"[^\w.-]+", "_", image.stem)
    if out is not None:
        clash = sorted(n for n in [*names.values(), *layer_files] if (out_dir / n).exists())
        if clash:
            raise PlotError(f"--out {out_dir} already holds {', '.join(clash)}; pick another folder")

    label = r.classes[index]
    files = [plots.input_image(pixels, out_dir / names["input"]),
             plots.filters_grid(inspection.first_conv_filters(r.model), out_dir / names["filters"])]
    files += [plots.activation_grid(m, out_dir / name) for m, name in zip(maps, layer_files, strict=True)]
    files.append(plots.grad_cam_overlay(pixels, heatmap, label, float(probabilities[index]),
                                        out_dir / names["gradcam"]))
    return ShowResult(image, r.dir, label, float(probabilities[index]),
                      {c: float(p) for c, p in zip(r.classes, probabilities, strict=True)}, out_dir, files)


# Longer file names are shortened in the middle so a title stays within its tile.
NAME_CHARS = 30


def shown_name(name: str, limit: int = NAME_CHARS) -> str:
    """A file name as a picture can show it: undecodable bytes as \\xNN, long names cut in the middle."""
    name = shown(name, limit=10 * limit)
    if len(name) > limit:
        keep = limit - 1
        name = name[:keep - keep // 2] + "…" + name[len(name) - keep // 2:]
    return name


def mistakes(report: EvalReport) -> list[tuple[Path, str]]:
    """The wrongly classified photos, most confident first, each with its tile title:
    the file name, then "true: cat / pred: dog (0.97)"."""
    if not len(report.probabilities):
        return []
    predicted = report.probabilities.argmax(axis=1)
    confidence = report.probabilities[np.arange(len(predicted)), predicted]
    wrong = np.flatnonzero(predicted != report.labels)
    return [(Path(report.files[i]),
             f"{shown_name(Path(report.files[i]).name)}\ntrue: {shown(report.classes[report.labels[i]], 40)} / "
             f"pred: {shown(report.classes[predicted[i]], 40)} ({confidence[i]:.2f})")
            for i in wrong[np.argsort(-confidence[wrong], kind="stable")]]


def evaluation_pictures(report: EvalReport, image_size: tuple[int, int], resize: str = "squash") -> list[Path]:
    """Write confusion_matrix.png and top_mistakes.png next to the report; [] when it has no folder.

    The mistakes are the most confidently wrong photos, shown at the model's input size and
    titled with their file names (photos.csv beside the report has the full paths).
    """
    if report.out_dir is None:
        return []
    # Class folder names may hold bytes that are not UTF-8, which no font can draw: escape them.
    names = [shown(c, 40) for c in report.classes]
    files = [plots.confusion_matrix(np.asarray(report.confusion), names, report.out_dir / CONFUSION_FILE)]
    images: list[np.ndarray] = []
    titles: list[str] = []
    for file, title in mistakes(report):
        if len(images) == TOP_MISTAKES:
            break
        try:
            images.append(load_image(file, image_size, resize))
        except ImageError:
            continue  # the photo changed or vanished since it was scored
        titles.append(title)
    files.append(plots.top_mistakes(images, titles, report.out_dir / MISTAKES_FILE))
    return files


def summary_diagram(summary: Summary, path: str | Path) -> Path:
    """Draw a model summary as boxes and arrows at `path`, which must not exist yet.

    Raises:
        PlotError: `path` exists (it is the user's file).
    """
    path = Path(path)
    if path.exists():
        raise PlotError(f"--diagram {path} already exists; pick another path")
    rows = [{"name": r.name, "type": r.type, "output_shape": r.output_shape, "params": r.params, "inputs": r.inputs}
            for r in summary.rows]
    title = f"{summary.name}: {len(rows)} layers, {summary.total:,} parameters"
    return plots.model_diagram(rows, path, title=title)

"""`catdog show`: pictures of what a trained run's network sees in one photo (the photo at the
model's input size, the first convolution's filters, each layer's activations, Grad-CAM).

catdog.inspection (which imports Keras) is imported inside `show`, so that importing this module
does not start Keras.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from catdog import plots
from catdog.errors import PlotError
from catdog.images import load_image
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
    r = load_run(run)
    image = Path(image)
    pixels = load_image(image, r.config.data.image_size, r.config.data.resize)
    from catdog import inspection  # Keras: after the run and the photo are known to be good

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

    label, probability, every = answer(r.classes, probabilities, index)
    files = [plots.input_image(pixels, out_dir / names["input"]),
             plots.filters_grid(inspection.first_conv_filters(r.model), out_dir / names["filters"])]
    files += [plots.activation_grid(m, out_dir / name) for m, name in zip(maps, layer_files, strict=True)]
    files.append(plots.grad_cam_overlay(pixels, heatmap, label, probability, out_dir / names["gradcam"]))
    return ShowResult(image, r.dir, label, probability, every, out_dir, files)

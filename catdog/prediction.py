"""Answering for new photos with a trained run.

Keras (and catdog.export, which imports it) is imported inside functions: predicting through
ONNX Runtime needs no TensorFlow.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from catdog.errors import CatdogError, DataError, ImageError, first_line, shown
from catdog.images import check_pixels, fit_array, is_system_file, load_image
from catdog.runs import Run, load_run
from catdog.runtime import ONNX_FILE, OnnxFallback, fallback_warning, open_onnx

BATCH = 32
# What predict takes: photo paths or folders, or RGB uint8 pixels (see `predict`).
Inputs = str | os.PathLike | np.ndarray | Sequence[str | os.PathLike] | Sequence[np.ndarray]


@dataclass
class Prediction:
    """The model's answer for one file, or the reason it could not read the file."""

    path: Path | None  # None for an array
    label: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": _text(self.path), "error": self.error}
        return {"path": _text(self.path), "label": self.label, "probability": self.probability,
                "probabilities": self.probabilities}


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def expand(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus every non-hidden entry under named folders that is not a folder
    (sorted): FIFOs, devices and broken links are kept so that `predict` lists them as skipped."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if not f.is_dir()
                            and not any(is_system_file(Path(part)) for part in f.relative_to(p).parts))
        else:
            files.append(p)
    return files


def predict(paths: Inputs, run: str | Path | Run | None = None, tta: bool = False,
            report: Callable[[str], None] | None = None, write_onnx: bool = True) -> Iterator[Prediction]:
    """Predict each image in `paths` (files or folders), in order, one Prediction per file; or, given
    RGB uint8 arrays, one Prediction per array (its `path` None).

    A file that cannot be read yields a Prediction with `error` set; the others are still predicted.
    An array is fitted to the model's size as a decoded photo is (`catdog.images.fit_array`).
    With `tta` each photo's probabilities are averaged with those of its mirror image.

    Args:
        paths: a path, a list of paths (files or folders), one (H, W, 3) array, a list of them, or
            an (N, H, W, 3) batch.
        run: a run folder or an open Run (default: the latest run under runs/).

    Raises:
        DataError: no files at the paths. ImageError: an array of the wrong shape or dtype, or
            arrays and paths mixed. RunError: the run cannot be used.

    A run without model.onnx gets one, once, when `write_onnx` (see `answerer`); `report`
    receives the line saying it was written.
    """
    arrays = pixel_arrays(paths)
    r = run if isinstance(run, Run) else load_run(run)
    if arrays is not None:
        yield from _predict_arrays(r, arrays, tta, answerer(r, tta, report, write_onnx))
        return
    paths = cast("list[str | os.PathLike]", [paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    files = expand(paths)
    if not paths:
        raise DataError("nothing to predict: give photo files, folders or RGB arrays")
    if not files:
        raise DataError(f"no files found in {', '.join(map(str, paths))}")
    # Before the decoding threads start: a warning (OnnxFallback) raised while one of them has
    # its warnings silenced (catch_warnings is process-wide) would be lost. No file to read, no
    # model to load.
    infer = answerer(r, tta, report, write_onnx) if any(f.is_file() for f in files) else None
    size, resize = r.config.data.image_size, r.config.data.resize
    for chunk, pixels, failed in decoded_chunks(files, size, resize, BATCH):
        probs = np.zeros((0, len(r.classes)))
        if pixels and infer is not None:
            probs = as_class_probabilities(infer(np.stack(pixels)))
        rows = iter(probs)
        for path in chunk:
            if path in failed:
                yield Prediction(path, error=failed[path])
                continue
            yield Prediction(path, *answer(r.classes, next(rows)))


def answer(classes: list[str], p: np.ndarray, index: int | None = None) -> tuple[str, float, dict[str, float]]:
    """(label, its probability, every class's probability) from one row of class probabilities;
    the label is the most probable class, or the class at `index`."""
    best = int(p.argmax()) if index is None else index
    return classes[best], float(p[best]), {c: float(v) for c, v in zip(classes, p, strict=True)}


def answerer(r, tta: bool = False, report: Callable[[str], None] | None = None, write_onnx: bool = False):
    """The function from a (N, H, W, 3) batch to the model's output for run `r`.

    ONNX Runtime on the run's model.onnx when it has one and it is the run's current export
    (no TensorFlow import, see catdog.runtime); Keras otherwise, with a warning saying why
    (`catdog.runtime.OnnxFallback`) once it has loaded, and for `tta`.

    With `write_onnx`, a run that has no model.onnx (trained where the converter was missing)
    gets one through `catdog.export.export_for_predict`, said to `report`, and ONNX Runtime
    answers, now and at every later call; when it cannot be written (a read-only run folder, a
    failed conversion), Keras answers with a warning saying why.

    Raises:
        RunError: the run's classes.json or config.yaml does not fit its model (class names,
            image size, resize mode), or model.keras cannot be loaded when Keras must answer.
    """
    fast, problem = (None, None) if tta else open_onnx(r)
    if fast is not None:
        return fast
    keras_model = r.model  # a model.keras that cannot be loaded is the one line to show, not the fallback
    if problem is not None:
        fallback_warning(r, problem)
    elif write_onnx and not tta and (fast := _written_onnx(r, report)) is not None:
        return fast
    model = with_mirror_averaged(keras_model) if tta else keras_model
    return model.predict_on_batch


def _written_onnx(r, report: Callable[[str], None] | None):
    """The run's model.onnx, written now by `export_for_predict`, in ONNX Runtime; None (with an
    `OnnxFallback` warning saying why, unless nothing was to be written) when Keras must answer."""
    from catdog.export import export_for_predict

    path = r.dir / ONNX_FILE
    try:
        result = export_for_predict(r)
    # Keras answers whatever went wrong (a read-only disk, a converter's own exception): the
    # run is usable without model.onnx, and the warning names the cause.
    except Exception as exc:  # noqa: BLE001
        fast, _ = open_onnx(r)  # another predict of the same run may have written it meanwhile
        if fast is None:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            kind = "" if isinstance(exc, (CatdogError, OSError)) else f"{type(exc).__name__}: "
            warnings.warn(f"{shown(path)} could not be written for fast predicts ({kind}{shown(why, 300)}); "
                          f"Keras answers instead", OnnxFallback, stacklevel=3)
        return fast
    if result is None:
        return None
    fast, problem = open_onnx(r)
    if fast is None:
        fallback_warning(r, problem or "it was not written")
        return None
    if report is not None:
        report(f"wrote {shown(path)} (once, from its model.keras): later predicts answer through ONNX Runtime "
               f"without loading TensorFlow")
    return fast


def decoded_chunks(files: list[Path], size: tuple[int, int], resize: str, batch: int):
    """(chunk, decoded pixels, {path: error}) per `batch` files, decoding ahead in threads.

    The next chunk is decoded on every core while the caller runs the model on this one: the
    decoders (libjpeg-turbo, Pillow, OpenCV) release the GIL, so both overlap.
    """
    def load(path: Path):
        try:
            return load_image(path, size, resize)
        except ImageError as exc:
            return exc

    chunks = [files[i:i + batch] for i in range(0, len(files), batch)]
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        ahead = [pool.submit(load, f) for f in chunks[0]]
        for i, chunk in enumerate(chunks):
            results = [f.result() for f in ahead]
            ahead = [pool.submit(load, f) for f in chunks[i + 1]] if i + 1 < len(chunks) else []
            pixels = [x for x in results if not isinstance(x, ImageError)]
            failed = {p: str(x) for p, x in zip(chunk, results, strict=True) if isinstance(x, ImageError)}
            yield chunk, pixels, failed


def as_class_probabilities(out) -> np.ndarray:
    """(N, classes) probabilities from a model's output; a 1-unit sigmoid p becomes [1 - p, p]."""
    out = np.asarray(out, dtype="float64")
    return np.concatenate([1 - out, out], axis=1) if out.shape[1] == 1 else out


def with_mirror_averaged(model):
    """A model whose output for a photo is the mean of `model`'s for it and its left-right mirror.

    Test-time augmentation: a mirrored cat is still a cat, and the two answers' errors are partly
    independent, so their mean is a little more accurate (docs/accuracy.md). It
    costs a second forward pass. Wraps `model` for predicting only; it is not saved.
    """
    import keras

    inp = keras.Input(model.input_shape[1:], name="photo")
    mirrored = keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=2), name="mirror")(inp)
    out = keras.layers.Average(name="mean")([model(inp), model(mirrored)])
    return keras.Model(inp, out, name=f"{model.name}_mirror_averaged")


def pixel_arrays(inputs: Inputs) -> list[np.ndarray] | None:
    """The arrays of `inputs` each checked (`check_pixels`), or None when `inputs` are paths.

    Raises:
        ImageError: an array of the wrong shape or dtype (naming which), or arrays and paths mixed.
    """
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 4:
            arrays = list(inputs)
        elif inputs.ndim == 3:
            arrays = [inputs]
        else:
            raise ImageError(f"expected an (height, width, 3) array of RGB pixels or an (N, height, width, 3) "
                             f"batch; got shape {tuple(inputs.shape)}")
    elif isinstance(inputs, (str, os.PathLike)) or not any(isinstance(x, np.ndarray) for x in inputs):
        return None
    else:
        arrays = list(inputs)
        if not all(isinstance(x, np.ndarray) for x in arrays):
            raise ImageError("give photos as paths or as arrays, not both in one call")
    for i, pixels in enumerate(arrays):
        try:
            check_pixels(pixels)
        except ImageError as exc:
            raise ImageError(f"array {i} of {len(arrays)}: {exc}") from None
    return arrays


def _predict_arrays(r: Run, arrays: list[np.ndarray], tta: bool, infer: Callable[[np.ndarray], np.ndarray],
                    ) -> Iterator[Prediction]:
    """One Prediction per array, fitted to the run's image size as a decoded photo file is."""
    size, resize = r.config.data.image_size, r.config.data.resize
    for start in range(0, len(arrays), BATCH):
        batch = np.stack([fit_array(a, size, resize) for a in arrays[start:start + BATCH]])
        for p in as_class_probabilities(infer(batch)):
            yield Prediction(None, *answer(r.classes, p))

"""Export a trained run for use outside catdog: ONNX, TensorFlow SavedModel or LiteRT.

Keras's own `model.export` writes the artifact. Three things are catdog's own, because
`model.export` cannot do them: the network is rebuilt in float32 without its augmentation
layers first (a mixed-precision graph binds float16/bfloat16 ops that ONNX Runtime refuses to
load, and augmentation is an inference no-op that has no place in a deployed graph); the
artifact's contract (classes, input size, resize mode, pixel range) travels with it, as ONNX
metadata and as a JSON file beside it; and a parity check compares the artifact's answers with
the Keras model's before the artifact is moved into place.

Keras, TensorFlow, ONNX, ONNX Runtime and LiteRT are imported inside functions: each format
loads only its own converter, and some are optional extras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from catdog import __version__
from catdog.errors import ExportError, raise_if_terminating
from catdog.images import preprocessing
from catdog.prediction import as_class_probabilities
from catdog.runs import Run, load_run, write_json
from catdog.runtime import ONNX_FILE, keras_tie, open_onnx

FORMATS = ("onnx", "savedmodel", "litert")
# The artifact each format writes into the run folder by default.
DEFAULT_NAMES = {"onnx": ONNX_FILE, "savedmodel": "savedmodel", "litert": "model.tflite"}
# Keras's name for each format.
_KERAS_FORMATS = {"onnx": "onnx", "savedmodel": "tf_saved_model", "litert": "litert"}
# The first Keras whose Model.export writes LiteRT (it needs Python 3.11); catdog's own floor is older.
LITERT_KERAS = (3, 13)
# Python modules each format needs to be written, beyond TensorFlow and Keras.
_NEEDS = {"onnx": ("tf2onnx", "onnx"), "savedmodel": (), "litert": ()}
# The bar for an artifact that computes the same function: float32 against float32.
PARITY_TOLERANCE = 1e-4
# Photos in the parity check: enough to cover both classes' answers, few enough to take a second.
PARITY_IMAGES = 8
# The scratch folder an export is written in, beside its target; removed however the export ends.
SCRATCH_PREFIX = ".catdog-export-"


@dataclass
class Parity:
    """How closely the artifact's probabilities follow the float32 Keras model's."""

    images: int
    max_abs_diff: float
    labels_agree: bool
    runtime: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ExportResult:
    """What `export` wrote: the artifact, the contract beside it, and the parity measured."""

    format: str
    path: Path
    contract_path: Path
    contract: dict
    parity: Parity | None = None
    notes: list[str] = field(default_factory=list)
    # True when nothing was written: `path` already held this run's current export.
    current: bool = False

    def line(self) -> str:
        if self.current:
            return f"{self.path} is already this run's current export; --out PATH writes another copy"
        if self.parity is None:
            check = "parity not checked"
        else:
            check = (f"parity on {self.parity.images} images via {self.parity.runtime}: max |diff| "
                     f"{self.parity.max_abs_diff:.1e}, labels agree")
        return f"wrote {self.path} ({self.format}) and {self.contract_path.name}; {check}"


def contract_path(artifact: Path) -> Path:
    """The JSON file beside an artifact: model.onnx -> model.onnx.json, savedmodel/ -> savedmodel.json."""
    return artifact.with_name(artifact.name + ".json")


def check_keras_writes(fmt: str, version: str | None = None) -> None:
    """Raise ExportError if Keras `version` (default: the installed one) cannot write `fmt`."""
    from catdog.keras_private import keras_version

    if fmt == "litert" and keras_version(version) < LITERT_KERAS:
        import keras

        raise ExportError(f"exporting litert needs Keras {LITERT_KERAS[0]}.{LITERT_KERAS[1]} or newer "
                          f"(on Python 3.11 or newer); this is Keras {version or keras.__version__}: "
                          f"pip install -U keras")


def missing_modules(fmt: str, find: Callable[[str], Any] = importlib.util.find_spec) -> list[str]:
    """The Python modules `fmt` needs that `find` (a module lookup) does not find, without importing them."""
    return [m for m in _NEEDS[fmt] if find(m) is None]


def can_export_onnx() -> bool:
    """Whether the ONNX converter (tf2onnx, onnx: dependencies of catdog) is installed."""
    return not missing_modules("onnx")


def contract(run: Run, fmt: str, artifact: Path, output_units: int) -> dict:
    """What a program needs to know to use the artifact without catdog and get catdog's answers.

    "preprocessing" names every step from the photo file to the input array (catdog.images); the
    recipe in docs/serving.md follows it with Pillow, NumPy and OpenCV.
    """
    height, width = run.config.data.image_size
    # Keras's LiteRT export writes a graph whose input is [1, H, W, 3]: one image a call. ONNX and
    # SavedModel take any batch.
    batch = 1 if fmt == "litert" else None
    return {
        "format": fmt,
        "artifact": artifact.name,
        "classes": list(run.classes),
        "input_size": [height, width],
        "input": {"name": "image", "shape": [batch, height, width, 3],
                  "batch": "any" if batch is None else batch, "dtype": "float32",
                  "layout": "NHWC", "color": "RGB", "pixel_range": [0, 255]},
        "pixel_note": "raw 0-255 RGB values as float32; scaling is inside the model",
        "resize": run.config.data.resize,
        "preprocessing": preprocessing(run.config.data.resize),
        # One sigmoid unit gives p(classes[1]); a softmax gives one probability per class.
        "output": "sigmoid" if output_units == 1 else "softmax",
        "model": run.config.model.name,
        "run": run.dir.name,
        "catdog_version": __version__,
    }


def inference_model(run: Run):
    """The run's network rebuilt in float32 without augmentation layers, holding the trained weights.

    Raises:
        ExportError: the rebuilt network's weights do not line up with the saved model's.
    """
    import keras

    from catdog.models import build_model

    trained = run.model
    # Augmentation and train.image_sizes' resize pass pixels through unchanged at inference; off,
    # their layers are not built.
    plain = dataclasses.replace(run.config.model, flip=False, rotation=0.0, zoom=0.0, translation=0.0,
                                contrast=0.0)
    unsized = dataclasses.replace(run.config.train, image_sizes=[])
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clean = build_model(dataclasses.replace(run.config, model=plain, train=unsized), len(run.classes),
                            pretrained=False)
    finally:
        keras.config.set_dtype_policy(previous)
    source = {layer.name: layer for layer in trained.layers}
    for layer in clean.layers:
        if not layer.weights:
            continue
        src = source.get(layer.name)
        if src is None or len(src.weights) != len(layer.weights):
            raise ExportError(f"{run.dir}: layer {layer.name!r} of the rebuilt network has no match in "
                              f"the saved model; was config.yaml edited after training?")
        try:
            layer.set_weights([np.asarray(w, dtype="float32") for w in src.get_weights()])
        except ValueError:  # a weight's shape differs: the config describes another network
            raise ExportError(f"{run.dir}: layer {layer.name!r} of the rebuilt network does not fit the saved "
                              f"model's weights; was config.yaml edited after training?") from None
    return clean


def parity_images(size: tuple[int, int], count: int = PARITY_IMAGES, seed: int = 0) -> np.ndarray:
    """A fixed set of float32 test images: smooth colour gradients with noise, both dark and bright."""
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    images = []
    for i in range(count):
        base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1),
                         np.full_like(xx, i / max(count - 1, 1))], axis=-1)
        noise = rng.normal(0, 0.15, (height, width, 3))
        images.append(np.clip((base * 0.6 + 0.2 * (i % 2) + noise) * 255, 0, 255))
    return np.asarray(images, dtype="float32")


def artifact_runner(fmt: str, path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """A function (N, H, W, 3) float32 -> model output through the format's own runtime, and its name.

    Raises:
        ExportError: the runtime is not installed (the caller may skip the check).
    """
    if fmt == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            raise ExportError("onnxruntime is not installed")
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), "onnxruntime"
    if fmt == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        return (lambda x: loaded.serve(tf.constant(x)).numpy()), "tf.saved_model"
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter

        runtime = "ai_edge_litert"
    else:
        import tensorflow as tf

        Interpreter, runtime = tf.lite.Interpreter, "tf.lite"

    def run_litert(x: np.ndarray) -> np.ndarray:
        # The converted graph has a batch of one; images go through one at a time.
        interpreter = Interpreter(model_path=str(path))
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], [len(x), *x.shape[1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run_litert, runtime


def check_parity(keras_model, fmt: str, path: Path, images: np.ndarray,
                 tolerance: float = PARITY_TOLERANCE) -> Parity:
    """Compare the artifact's probabilities with `keras_model`'s on `images`.

    Raises:
        ExportError: they differ by more than `tolerance`, or a label differs.
    """
    expected = as_class_probabilities(keras_model.predict_on_batch(images))
    runner, runtime = artifact_runner(fmt, path)
    got = as_class_probabilities(runner(images))
    diff = float(np.abs(expected - got).max())
    agree = bool((expected.argmax(1) == got.argmax(1)).all())
    if diff > tolerance or not agree:
        raise ExportError(f"the {fmt} artifact does not match the Keras model: max |diff| {diff:.2e} "
                          f"(allowed {tolerance:.0e}), labels {'agree' if agree else 'differ'}; nothing written")
    return Parity(len(images), diff, agree, runtime)


def _finish_onnx(path: Path, info: dict) -> None:
    """The graph rewritten for ONNX Runtime's speed (catdog.onnx_graph), the contract in its metadata."""
    import onnx

    from catdog.onnx_graph import flatten_in_nchw

    proto = onnx.load(str(path))
    flatten_in_nchw(proto)
    del proto.metadata_props[:]
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    proto.producer_name = "catdog"
    onnx.save(proto, str(path))


def export(run: str | Path | Run | None = None, fmt: str = "onnx", out: str | Path | None = None,
           parity: bool = True, images: np.ndarray | None = None, tolerance: float = PARITY_TOLERANCE,
           find: Callable[[str], Any] = importlib.util.find_spec, force: bool = False) -> ExportResult:
    """Write the run's model as `fmt` with its contract beside it, after a parity check.

    Args:
        run: the run folder (default: the latest run), or a loaded Run.
        fmt: "onnx", "savedmodel" or "litert".
        out: the artifact's path (default: model.onnx, savedmodel/ or model.tflite in the run
            folder). An existing file or folder there is never replaced, unless `force`; the
            run's own model.onnx that is already its current export is left as it is (the
            result says so, `current`).
        parity: compare the artifact with the Keras model before moving it into place; skipped
            (with a note) when the format's runtime is not installed.
        images: float32 (N, H, W, 3) images for the parity check (default: `parity_images`).
        tolerance: the largest absolute difference of a probability the check accepts.
        find: how a module is looked up (importlib.util.find_spec); tests pass one that fails.
        force: replace an existing artifact (and its contract) of the same kind, file or folder.

    Raises:
        ExportError: unknown format, a converter missing, a Keras too old for the format, the
            output exists (or appeared during the export: another export got there first), or
            parity failed.
        RunError: no usable run folder, or its config.yaml does not fit its model.
    """
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    r = run if isinstance(run, Run) else load_run(run)
    target = Path(out) if out is not None else r.dir / DEFAULT_NAMES[fmt]
    beside = contract_path(target)
    if not force and fmt == "onnx" and _is_runs_onnx(r, target):
        return _current_export(r, target, beside)  # needs no converter: nothing is written
    missing = missing_modules(fmt, find)
    if missing:
        raise ExportError(f"exporting {fmt} needs {', '.join(missing)}: pip install {' '.join(missing)}")
    if fmt == "litert" and target.suffix != ".tflite":
        raise ExportError(f"--out for litert must end in .tflite; got {target}")
    check_keras_writes(fmt)
    if force and (target.exists() or target.is_symlink()) and (target.is_symlink() or
                                                                target.is_dir() != (fmt == "savedmodel")):
        raise ExportError(f"--force replaces a {'folder' if fmt == 'savedmodel' else 'file'} only, and {target} "
                          f"is not one; remove it or pass --out NEW_PATH")
    if not force:
        for existing in (target, beside):
            if existing.exists() or existing.is_symlink():
                raise ExportError(f"{existing} already exists; remove it, pass --force to replace it, "
                                  f"or pass --out NEW_PATH")
    target.parent.mkdir(parents=True, exist_ok=True)

    import keras

    # Hashed before the model is loaded: if model.keras changes in between, the export's tie
    # names the old file and catdog.runtime passes the export over instead of trusting it.
    tie = keras_tie(r.dir)
    model = inference_model(r)
    mixed = sorted({layer.dtype_policy.name for layer in r.model.layers
                    if layer.dtype_policy.name.startswith("mixed")})
    height, width = r.config.data.image_size
    info = {**contract(r, fmt, target, int(model.outputs[0].shape[-1])), **tie,
            # Keras's count, which `serve` reports on either engine (an ONNX graph's initializers
            # also hold shape constants).
            "parameters": int(r.model.count_params())}
    result = ExportResult(fmt, target, beside, info)
    # Written in a scratch folder beside the target and moved in only when it passed. A SIGTERM
    # the CLI turns into an exception, like any failure, removes the folder with what is in it.
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=target.parent) as scratch:
        tmp = Path(scratch) / target.name
        spec = keras.InputSpec(shape=(None, height, width, 3), dtype="float32", name="image")
        try:
            with warnings.catch_warnings():
                # Converter chatter (tf2onnx's numpy probes, tf.lite's deprecation) is not the user's to act on.
                warnings.simplefilter("ignore")
                model.export(str(tmp), format=_KERAS_FORMATS[fmt], verbose=False, input_signature=[spec])
        except ImportError as exc:
            raise ExportError(f"exporting {fmt} failed: {exc}; pip install tf2onnx onnx") from None
        if fmt == "onnx":
            _finish_onnx(tmp, info)
        if parity:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result.parity = check_parity(model, fmt, tmp, images if images is not None
                                                 else parity_images((height, width)), tolerance)
            except ExportError as exc:
                if "is not installed" not in str(exc):
                    raise
                result.notes.append(f"parity not checked: {exc}")
        if result.parity is not None:
            info["parity"] = result.parity.to_dict()
        if mixed:
            result.notes.append(f"trained in {mixed[0]}, exported in float32 (the parity check compares "
                                f"float32 with float32)")
        if fmt == "onnx":
            info["onnx_size"] = tmp.stat().st_size  # catdog.runtime's cheap check for a damaged file
        tmp_contract = Path(scratch) / beside.name
        write_json(tmp_contract, info)
        raise_if_terminating()  # a SIGTERM the converter swallowed stops the export here
        # The contract first: a reader that finds the artifact finds its contract.
        own_contract = put_in_place(tmp_contract, beside, Path(scratch), force)
        try:
            put_in_place(tmp, target, Path(scratch), force)
        except BaseException:
            _remove_own(beside, own_contract)
            raise
    return result



def _is_runs_onnx(run: Run, target: Path) -> bool:
    """Whether `target` is the run's own model.onnx, the one catdog.runtime answers with."""
    own = run.dir / ONNX_FILE
    return target.exists() and own.exists() and target.resolve() == own.resolve()


def _current_export(run: Run, target: Path, beside: Path) -> ExportResult:
    """The result for a run's model.onnx that is already its current export, or why it is not.

    Raises:
        ExportError: it is stale, foreign, damaged or cannot be loaded; the line says how to replace it.
    """
    model, problem = open_onnx(run)
    if model is None:
        raise ExportError(f"{problem}; pass --force to replace it, or --out NEW_PATH to write another copy")
    info = read_contract(target)
    recorded = info.get("parity")
    parity = Parity(**recorded) if isinstance(recorded, dict) and set(recorded) == {
        f.name for f in dataclasses.fields(Parity)} else None
    return ExportResult("onnx", target, beside, info, parity, current=True)


def put_in_place(tmp: Path, target: Path, scratch: Path, force: bool = False) -> tuple[int, int]:
    """Move a finished file or folder from the scratch folder to `target`; its (device, inode).

    Without `force` the move is exclusive: it fails if anything appeared at `target` meanwhile
    (another export to the same path), so two exports never both succeed with one replaced. A
    file is hard-linked (link() never replaces); a folder is renamed, which fails onto a file or
    a non-empty folder. With `force` an existing target of the same kind is replaced at once; a
    replaced folder goes to the scratch folder, removed with it.

    Raises:
        ExportError: `target` exists (without `force`), or is of the other kind (with it).
    """
    is_dir = tmp.is_dir()
    ident = (tmp.stat().st_dev, tmp.stat().st_ino)
    if force and (target.exists() or target.is_symlink()):
        if target.is_dir() != is_dir or target.is_symlink():
            raise ExportError(f"{target} is a {'folder' if target.is_dir() else 'file or link'}; --force replaces "
                              f"only a {'folder' if is_dir else 'file'}: remove it or pass --out NEW_PATH")
        if is_dir:
            os.rename(target, scratch / ".replaced")
        os.rename(tmp, target)
        return ident
    appeared = ExportError(f"{target} appeared while exporting (another export to the same path?); "
                           f"it was left as it is and nothing of this export was kept")
    try:
        if is_dir:
            os.rename(tmp, target)
        else:
            os.link(tmp, target)
    except FileExistsError:
        raise appeared from None
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR, errno.EEXIST):
            raise appeared from None
        if is_dir or exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        # A file system without hard links: claim the name exclusively, then rename over the claim.
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise appeared from None
        os.replace(tmp, target)
    return ident


def _remove_own(path: Path, ident: tuple[int, int]) -> None:
    """Remove `path` if it is still the file `put_in_place` put there (identified by device and inode)."""
    with contextlib.suppress(OSError):
        st = path.stat()
        if (st.st_dev, st.st_ino) == ident:
            path.unlink()


def export_after_training(run_dir: Path, model=None) -> ExportResult | None:
    """model.onnx beside model.keras when the ONNX converter and runtime are installed, for fast `catdog predict`.

    Returns None (nothing written) without them, on a Keras backend other than TensorFlow (whose
    ONNX converter, tf2onnx, is TensorFlow's), or when the run already holds model.onnx.
    `model` is the trained Keras model, if at hand (saves loading it back).
    """
    import keras

    if (not can_export_onnx() or importlib.util.find_spec("onnxruntime") is None
            or keras.backend.backend() != "tensorflow" or (run_dir / ONNX_FILE).exists()):
        return None
    r = load_run(run_dir)
    if model is not None:
        r._model = model
    return export(r, "onnx")


def export_for_predict(run: Run) -> ExportResult | None:
    """model.onnx for a run that has none (trained where the converter was missing), so that
    this and every later predict answers through ONNX Runtime instead of importing TensorFlow.

    Returns None (nothing written) where `export_after_training` writes nothing: no converter or
    runtime, another Keras backend, or a model.onnx already there.

    Raises:
        ExportError: the run folder cannot be written (a read-only disk or folder), or the
            export failed (parity, a file in the way).
        OSError: writing failed (a full disk).
    """
    if not os.access(run.dir, os.W_OK):
        raise ExportError(f"{run.dir} is read-only")
    return export_after_training(run.dir, run.model)


def read_contract(artifact: str | Path) -> dict[str, Any]:
    """The contract JSON beside an artifact."""
    path = contract_path(Path(artifact))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path} is missing or damaged ({exc}); export the run again") from None

"""Inference with ONNX Runtime on a run's exported model.onnx, without TensorFlow or Keras.

Importing TensorFlow takes seconds; ONNX Runtime a fraction of one. `catdog predict` and
`catdog serve` use this when the run holds a model.onnx (written at the end of training, by
`catdog export`, or by the first `catdog predict` of a run that had none) and fall back to Keras
otherwise. Nothing here may import TensorFlow or Keras, directly or through another catdog module.

A model.onnx is used only once it is shown to be this run's current export: its contract
(model.onnx.json) and the ONNX file's own metadata record the SHA-256 and size of the
model.keras it was exported from (`keras_tie`), which must be the run's model.keras now. A file
that fails a check, or that ONNX Runtime cannot load, is passed over with a warning saying why
(`OnnxFallback`, one line from the CLI), and Keras answers. classes.json and config.yaml (the
image size and resize mode predict and serve read) must say what the model was trained with, as
its contract records it; when they do not, nothing answers (RunError), since Keras would give
the wrong labels, or be fed the wrong pixels, too.

ONNX Runtime is imported inside functions: an install may lack it (predict then falls back to Keras).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from catdog.errors import RunError, first_line, shown
from catdog.runs import CLASSES_FILE, CONFIG_FILE, MODEL_FILE

if TYPE_CHECKING:
    from catdog.runs import Run

# What catdog.export writes into a run folder (catdog.export imports Keras, so it names them from here).
ONNX_FILE = "model.onnx"
CONTRACT_FILE = ONNX_FILE + ".json"
# The contract keys that tie an export to the model.keras it came from (see `keras_tie`).
TIE_KEYS = ("keras_sha256", "keras_size", "keras_mtime_ns")


class OnnxFallback(UserWarning):
    """The run's model.onnx is not used (stale, foreign, damaged or unloadable); Keras answers instead."""


class OnnxModel:
    """A run's model.onnx in an ONNX Runtime session: float32 (N, H, W, 3) raw pixels -> output."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()  # its default: one thread per physical core
        options.log_severity_level = 3  # errors only: its warnings are about graph fusions
        # Idle worker threads sleep instead of spinning: spinning takes the cores that decode the
        # next photos (predict, serve) away from them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Memory patterns are planned and kept per input shape, so a server seeing batches of
        # 1 to 8 images would keep eight plans for no speed (docs/speed.md).
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(images, dtype=np.float32)})[0]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def keras_tie(run_dir: str | Path) -> dict[str, Any]:
    """What ties an export to its run: the SHA-256 and size of the run's model.keras, and its
    modification time, which lets `tie_holds` skip the hash while the file is untouched."""
    path = Path(run_dir) / MODEL_FILE
    before = path.stat()
    return {"keras_sha256": file_sha256(path), "keras_size": before.st_size, "keras_mtime_ns": before.st_mtime_ns}


def tie_holds(run_dir: str | Path, recorded: dict[str, Any]) -> bool:
    """Whether the run's model.keras is the one `recorded` (a contract) was exported from.

    A different size settles it at once, the same size and modification time too (any rewrite
    of model.keras changes the time); otherwise (a copied run folder) the file is hashed.
    """
    st = (Path(run_dir) / MODEL_FILE).stat()
    if st.st_size != recorded.get("keras_size"):
        return False
    if st.st_mtime_ns == recorded.get("keras_mtime_ns"):
        return True
    return file_sha256(Path(run_dir) / MODEL_FILE) == recorded.get("keras_sha256")


def check_config(run: Run, contract: dict[str, Any]) -> None:
    """Refuse a classes.json, or a config.yaml whose image size or resize mode, is not what the
    model was trained with (its contract, tied to the run's model.keras).

    Raises:
        RunError: naming the file (and key), both values and the fix.
    """
    classes, names = contract.get("classes"), run.dir / CLASSES_FILE
    if isinstance(classes, list) and classes != run.classes:
        if len(classes) != len(run.classes):
            raise RunError(f"{shown(names)} names {len(run.classes)} classes but the model has {len(classes)} "
                           f"outputs; restore the run's own {CLASSES_FILE} or retrain")
        raise RunError(f"{shown(names)} names {run.classes} but the model was trained with {classes} (recorded "
                       f"in {CONTRACT_FILE}); restore the run's own {CLASSES_FILE} or retrain")
    config, where = run.config.data, run.dir / CONFIG_FILE
    trained = {"image_size": contract.get("input_size"), "resize": contract.get("resize")}
    now = {"image_size": list(config.image_size), "resize": config.resize}
    for key, value in now.items():
        if trained[key] is not None and trained[key] != value:
            raise RunError(f"{shown(where)}: data.{key} is {value} but the model was trained with "
                           f"{trained[key]} (recorded in {CONTRACT_FILE}); restore data.{key}: {trained[key]} "
                           f"(config.yaml records the training; it is not a setting to change)")


def check_trained_config(run: Run) -> None:
    """`check_config` against the run's model.onnx.json, when it is there and tied to the run's
    model.keras: besides config.yaml and classes.json, the only record of the resize mode and the
    class order the model was trained with.

    Raises:
        RunError: classes.json, or config.yaml's image size or resize mode, differs from the contract's.
    """
    try:
        contract = json.loads((run.dir / CONTRACT_FILE).read_text())
        tied = isinstance(contract, dict) and all(key in contract for key in TIE_KEYS) and tie_holds(run.dir, contract)
    except (OSError, ValueError):
        return
    if tied:
        check_config(run, contract)


def open_onnx(run: Run) -> tuple[OnnxModel | None, str | None]:
    """The run's model.onnx in ONNX Runtime if it is this run's current export, else why not.

    Returns (model, None) when it can be used; (None, reason) when it cannot, `reason` being one
    line naming the file and what is wrong; (None, None) when the run holds no model.onnx.

    Raises:
        RunError: classes.json, or config.yaml's image size or resize mode, differs from the
            model's (`check_config`).
    """
    path = run.dir / ONNX_FILE
    if not path.is_file():
        return None, None
    try:
        contract = json.loads((run.dir / CONTRACT_FILE).read_text())
        if not isinstance(contract, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return None, f"{shown(run.dir / CONTRACT_FILE)} is missing or damaged ({first_line(exc)})"
    if any(key not in contract for key in TIE_KEYS):
        return None, f"{shown(path)} records no digest of the {MODEL_FILE} it was exported from (an older export)"
    if contract.get("onnx_size") != path.stat().st_size:
        return None, (f"{shown(path)} is {path.stat().st_size} bytes, not the {contract.get('onnx_size')} "
                      f"its export wrote (damaged, or replaced)")
    if not tie_holds(run.dir, contract):
        return None, (f"{shown(path)} was exported from another {MODEL_FILE} (a stale export, or one copied "
                      f"from another run)")
    check_config(run, contract)
    if importlib.util.find_spec("onnxruntime") is None:
        return None, f"{shown(path)} not used: onnxruntime is not installed (pip install onnxruntime)"
    try:
        model = OnnxModel(path)
    # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...) for a bad file.
    except Exception as exc:  # noqa: BLE001
        return None, (f"{shown(path)} cannot be loaded by ONNX Runtime ({type(exc).__name__}: "
                      f"{shown(first_line(exc), 160)})")
    if model.metadata.get("keras_sha256") != contract["keras_sha256"]:
        return None, f"{shown(path)} and {CONTRACT_FILE} come from different exports"
    return model, None


def onnx_model(run: Run) -> OnnxModel | None:
    """The run's ONNX model, or None when Keras must answer instead.

    None without a model.onnx (silently), and with a warning (`fallback_warning`) when the file
    cannot be trusted or loaded, or onnxruntime is not installed.

    Raises:
        RunError: classes.json, or config.yaml's image size or resize mode, differs from the model's.
    """
    model, problem = open_onnx(run)
    if problem is not None:
        fallback_warning(run, problem)
    return model


def fallback_warning(run: Run, problem: str) -> None:
    """Say (as an `OnnxFallback` warning, one line from the CLI) why Keras answers instead of model.onnx."""
    warnings.warn(f"{problem}; Keras answers instead (catdog export --run {shown(run.dir)} --force writes a "
                  f"current {ONNX_FILE})", OnnxFallback, stacklevel=3)

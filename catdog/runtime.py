"""Inference with ONNX Runtime on a run's exported model.onnx, without TensorFlow or Keras.

Importing TensorFlow takes seconds; ONNX Runtime a fraction of one. `catdog predict` and
`catdog serve` use this when the run holds a model.onnx (written at the end of training when
`catdog[export]` is installed, or by `catdog export`) and fall back to Keras otherwise. Nothing
here may import TensorFlow or Keras, directly or through another catdog module.

ONNX Runtime is imported inside functions: it is an optional extra.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from catdog.runs import MODEL_FILE

# What catdog.export writes into a run folder (catdog.export imports Keras, so it names them from here).
ONNX_FILE = "model.onnx"
CONTRACT_FILE = ONNX_FILE + ".json"


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

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(images, dtype=np.float32)})[0]


def onnx_model(run_dir: str | Path, classes: list[str]) -> OnnxModel | None:
    """The run's ONNX model, or None when Keras must answer instead.

    None when onnxruntime is not installed, the run holds no model.onnx, the ONNX file is older
    than model.keras (the Keras model changed since the export), or its contract names other
    classes than the run.
    """
    run_dir = Path(run_dir)
    path = run_dir / ONNX_FILE
    if not path.is_file() or importlib.util.find_spec("onnxruntime") is None:
        return None
    keras_file = run_dir / MODEL_FILE
    if keras_file.is_file() and keras_file.stat().st_mtime > path.stat().st_mtime:
        return None
    try:
        contract = json.loads((run_dir / CONTRACT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if contract.get("classes") != list(classes):
        return None
    return OnnxModel(path)

"""catdog export and the fast predict path: parity of every format with Keras, the contract that
travels with each artifact, a mixed-precision run, and predict without TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from conftest import write_images  # noqa: E402

from catdog.cli import main  # noqa: E402
from catdog.config import load_config  # noqa: E402
from catdog.export import (  # noqa: E402
    LITERT_KERAS,
    ExportError,
    check_keras_writes,
    export,
    inference_model,
    parity_images,
    read_contract,
)
from catdog.keras_private import keras_version  # noqa: E402
from catdog.prediction import predict  # noqa: E402
from catdog.runs import load_run  # noqa: E402
from catdog.training import train  # noqa: E402

# The article model, and a ResNet trained in mixed precision with every augmentation layer.
CONFIGS = {
    "article": ["data.image_size=20", "train.batch_size=8", "train.epochs=1", "model.flip=true",
                "model.contrast=0.1"],
    "resnet": ["data.image_size=32", "train.batch_size=8", "train.epochs=1", "model.name=resnet",
               "model.stem_pool=true", "model.flip=true", "model.rotation=0.05", "model.zoom=0.1",
               "model.translation=0.1", "train.precision=mixed_bfloat16"],
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export-photos")
    write_images(root / "cats", 12, size=40, seed=1)
    write_images(root / "dogs", 12, size=40, seed=2, bright=True)
    return root


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def run_dir(request, photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-runs") / request.param
    config = load_config(None, [*CONFIGS[request.param], f"data.cache_dir={out.parent / 'cache'}"])
    train(config, photos, out)
    return out


def test_training_writes_model_onnx_with_its_contract(run_dir):
    contract = read_contract(run_dir / "model.onnx")
    run = load_run(run_dir)
    assert contract["classes"] == run.classes == ["cats", "dogs"]
    assert contract["input_size"] == list(run.config.data.image_size)
    assert contract["input"]["pixel_range"] == [0, 255] and contract["input"]["color"] == "RGB"
    assert contract["resize"] == "squash" and contract["run"] == run_dir.name
    assert contract["parity"]["max_abs_diff"] <= 1e-4 and contract["parity"]["labels_agree"]


def test_onnx_metadata_float32_graph_and_no_augmentation(run_dir):
    import onnx

    proto = onnx.load(str(run_dir / "model.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == ["cats", "dogs"]
    assert json.loads(meta["input_size"]) == list(load_run(run_dir).config.data.image_size)
    assert meta["resize"] == "squash" and "catdog_version" in meta
    float32, low = onnx.TensorProto.FLOAT, {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == float32
    assert not [t.name for t in proto.graph.initializer if t.data_type in low]
    ops = {n.op_type for n in proto.graph.node}
    # RandomGeometry's warp, RandomFlip's and RandomContrast's random draws are training-only.
    assert not ops & {"RandomUniform", "RandomUniformLike", "RandomNormal", "Multinomial"}
    assert not [n.name for n in proto.graph.node if "geometry" in n.name or "contrast" in n.name
                or "flip" in n.name]


@pytest.mark.parametrize("fmt", ["onnx", "savedmodel", pytest.param("litert", marks=pytest.mark.skipif(
    keras_version() < LITERT_KERAS, reason="Model.export writes LiteRT from Keras 3.13"))])
def test_every_format_matches_keras(run_dir, fmt, tmp_path):
    out = tmp_path / {"onnx": "m.onnx", "savedmodel": "sm", "litert": "m.tflite"}[fmt]
    result = export(run_dir, fmt, out)
    assert out.exists() and (tmp_path / (out.name + ".json")).is_file()
    assert result.parity is not None
    assert result.parity.max_abs_diff <= 1e-4 and result.parity.labels_agree
    assert read_contract(out)["format"] == fmt


def test_inference_model_is_float32_without_augmentation_and_same_answers(run_dir):
    run = load_run(run_dir)
    clean = inference_model(run)
    assert {layer.dtype_policy.name for layer in clean.layers} == {"float32"}
    names = {layer.name for layer in clean.layers}
    assert not names & {"geometry", "flip", "contrast"}
    x = parity_images(run.config.data.image_size)
    expected = np.asarray(run.model.predict_on_batch(x), dtype="float32")
    # Same weights; only the mixed-precision run may differ, by bfloat16 rounding.
    tol = 5e-2 if run.config.train.precision.startswith("mixed") else 1e-5
    assert np.abs(np.asarray(clean.predict_on_batch(x)) - expected).max() <= tol


def test_fast_predict_agrees_with_keras(run_dir, photos):
    files = sorted(photos.rglob("*.jpg"))
    fast = list(predict(files, run_dir))
    # The Keras path: the same run with model.onnx moved aside.
    onnx, moved = run_dir / "model.onnx", run_dir / "model.onnx.aside"
    onnx.rename(moved)
    try:
        keras_answers = list(predict(files, run_dir))
    finally:
        moved.rename(onnx)
    assert [p.label for p in fast] == [p.label for p in keras_answers]
    # The mixed-precision run's Keras model computes in bfloat16; its export in float32.
    tol = 5e-2 if load_run(run_dir).config.train.precision.startswith("mixed") else 1e-4
    for a, b in zip(fast, keras_answers, strict=True):
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) <= tol


def test_predict_with_model_onnx_imports_no_tensorflow(run_dir, photos):
    code = ("import sys; from catdog.prediction import predict; "
            f"p = list(predict([{str(next(photos.rglob('*.jpg')))!r}], {str(run_dir)!r})); "
            "assert p[0].label in ('cats', 'dogs'), p; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "CATDOG_CACHE": str(run_dir.parent / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_stale_model_onnx_falls_back_to_keras(run_dir):
    from catdog.runtime import onnx_model

    run = load_run(run_dir)
    assert onnx_model(run_dir, run.classes) is not None
    assert onnx_model(run_dir, ["dogs", "cats"]) is None  # another run's classes
    onnx = run_dir / "model.onnx"
    before = onnx.stat()
    os.utime(onnx, (before.st_atime, (run_dir / "model.keras").stat().st_mtime - 10))
    try:
        assert onnx_model(run_dir, run.classes) is None
    finally:
        os.utime(onnx, (before.st_atime, before.st_mtime))


def test_existing_artifact_is_never_replaced(run_dir):
    onnx = run_dir / "model.onnx"
    before = onnx.read_bytes()
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {onnx} already exists; remove it or pass --out NEW_PATH"
    assert onnx.read_bytes() == before


def test_missing_converter_names_the_extra(run_dir, tmp_path):
    with pytest.raises(ExportError, match=r"^exporting onnx needs tf2onnx, onnx: pip install 'catdog\[export\]'$"):
        export(run_dir, "onnx", tmp_path / "m.onnx", find=lambda name: None)
    assert not list(tmp_path.iterdir())


def test_failed_parity_writes_nothing(run_dir, tmp_path):
    with pytest.raises(ExportError, match="does not match the Keras model"):
        export(run_dir, "onnx", tmp_path / "m.onnx", tolerance=-1.0)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("fmt", "version"), [("litert", "3.13.0"), ("onnx", "3.8.0"), ("savedmodel", "3.8.0")])
def test_keras_that_writes_the_format_passes(fmt, version):
    check_keras_writes(fmt, version)


def test_litert_on_an_older_keras_is_one_line():
    with pytest.raises(ExportError) as info:
        check_keras_writes("litert", "3.12.1")
    assert str(info.value) == ("exporting litert needs Keras 3.13 or newer (on Python 3.11 or newer); "
                               "this is Keras 3.12.1: pip install -U keras")


def test_litert_path_must_end_in_tflite(run_dir, tmp_path):
    result = CliRunner().invoke(main, ["export", "--run", str(run_dir), "--format", "litert",
                                       "--out", str(tmp_path / "m.lite")])
    assert result.exit_code == 1
    assert "must end in .tflite" in result.stderr

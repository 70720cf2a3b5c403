"""The answer predict, serve and an export give is the most probable class: shown on a run whose
model is made to prefer a known class with known probabilities, through every path that answers."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_images

from catdog.config import load_config
from catdog.prediction import answer, answerer, predict
from catdog.runs import load_run
from catdog.runtime import OnnxModel
from catdog.training import train

CLASSES = ["birds", "cats", "dogs"]
# The output layer's bias once its kernel is zeroed: every photo gets softmax(BIAS), whose most
# probable class is the middle one, neither the first, the last, nor the least probable.
BIAS = [0.0, 2.0, 1.0]
PREFERRED = "cats"
EXPECTED = {c: math.exp(b) / sum(math.exp(x) for x in BIAS) for c, b in zip(CLASSES, BIAS, strict=True)}


def test_answer_is_the_most_probable_class():
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c", "d", "e"]
    for _ in range(200):
        p = rng.dirichlet(np.full(len(classes), 0.5))
        label, probability, every = answer(classes, p)
        assert label == classes[int(np.argmax(p))] and probability == pytest.approx(p.max())
        assert every == pytest.approx(dict(zip(classes, p, strict=True)))
        assert max(every, key=every.get) == label
    # `index` names the class to answer with (Grad-CAM of another class), whatever is most probable.
    assert answer(classes, np.array([0.1, 0.6, 0.1, 0.1, 0.1]), index=3)[:2] == ("d", pytest.approx(0.1))


@pytest.fixture(scope="module")
def biased(tmp_path_factory) -> tuple[Path, list[Path]]:
    """(run folder, photos): a tiny three-class run whose output layer answers softmax(BIAS) for any photo.

    Without model.onnx, so that predict answers with Keras; `with_onnx` exports one."""
    root = tmp_path_factory.mktemp("biased")
    for i, name in enumerate(CLASSES):
        write_images(root / "photos" / name, 8, seed=i + 1, bright=name == "dogs")
    config = load_config(None, ["data.image_size=16", "train.batch_size=8", "train.epochs=1",
                                f"data.cache_dir={root / 'cache'}"])
    run = train(config, root / "photos", root / "run").run_dir
    model = load_run(run).model
    kernel, _ = model.get_layer("output").get_weights()
    model.get_layer("output").set_weights([np.zeros_like(kernel), np.asarray(BIAS, dtype="float32")])
    model.save(run / "model.keras")
    for stale in ("model.onnx", "model.onnx.json"):
        (run / stale).unlink(missing_ok=True)
    return run, sorted((root / "photos").rglob("*.jpg"))


@pytest.fixture(scope="module")
def with_onnx(biased, tmp_path_factory) -> Path:
    """A copy of the biased run with its own current model.onnx."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from catdog.export import export

    run = Path(shutil.copytree(biased[0], tmp_path_factory.mktemp("onnx") / "run"))
    export(run, "onnx")
    return run


def assert_preferred(got: dict) -> None:
    """One answer (as Prediction.to_dict and serve give it) is the preferred class with softmax(BIAS)."""
    assert got["label"] == PREFERRED, got
    assert got["probability"] == pytest.approx(EXPECTED[PREFERRED], abs=1e-5)
    assert got["probabilities"] == pytest.approx(EXPECTED, abs=1e-5)


def test_keras_predict_answers_the_most_probable_class(biased):
    run, photos = biased
    assert not isinstance(answerer(load_run(run)), OnnxModel)
    answers = list(predict(photos, run))
    assert len(answers) == len(photos)
    for p in answers:
        assert_preferred(p.to_dict())


def test_onnx_predict_answers_the_most_probable_class(biased, with_onnx):
    assert isinstance(answerer(load_run(with_onnx)), OnnxModel)
    for p in predict(biased[1], with_onnx):
        assert_preferred(p.to_dict())


def test_mirror_averaged_predict_answers_the_most_probable_class(biased):
    for p in predict(biased[1][:4], biased[0], tta=True):
        assert_preferred(p.to_dict())


def test_serve_answers_the_most_probable_class(biased, with_onnx):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from test_serve import Server

    for run in (biased[0], with_onnx):  # Keras, then ONNX Runtime
        server = Server(run, "--no-explain")
        try:
            for photo in biased[1][::6]:
                status, body = server.request("/v1/predict", photo.read_bytes(), {"Content-Type": "image/jpeg"})
                assert status == 200, body
                (got,) = body["predictions"]
                assert_preferred(got)
        finally:
            server.stop()


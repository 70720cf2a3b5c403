"""Answering for new photos: the files a folder expands to, a model's output turned into answers,
and the answer predict, serve and an export give being the most probable class (shown on a run whose
model is made to prefer a known class with known probabilities, through every path that answers)."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_images

from catdog.config import load_config
from catdog.prediction import Prediction, answer, answerer, as_class_probabilities, decoded_chunks, expand, predict
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



def test_expand_lists_files_named_and_found_under_folders_in_order(tmp_path):
    write_images(tmp_path / "photos" / "b", 2)
    write_images(tmp_path / "photos" / "a", 1)
    (tmp_path / "photos" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "photos" / ".hidden").mkdir()
    (tmp_path / "photos" / ".hidden" / "x.jpg").write_bytes(b"junk")
    os.mkfifo(tmp_path / "photos" / "a" / "pipe")
    single = tmp_path / "one.jpg"
    assert expand([single, tmp_path / "photos"]) == [
        single,
        tmp_path / "photos" / "a" / "img_000.jpg", tmp_path / "photos" / "a" / "pipe",
        tmp_path / "photos" / "b" / "img_000.jpg", tmp_path / "photos" / "b" / "img_001.jpg",
    ]
    assert expand([]) == []


def test_a_sigmoid_output_becomes_two_class_probabilities():
    np.testing.assert_allclose(as_class_probabilities(np.array([[0.25], [1.0]], "float32")),
                               [[0.75, 0.25], [0.0, 1.0]])
    softmax = np.array([[0.1, 0.2, 0.7]], "float32")
    out = as_class_probabilities(softmax)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, softmax, rtol=1e-7)


def test_answer_is_the_most_probable_class_or_the_one_asked_for():
    p = np.array([0.2, 0.5, 0.3])
    assert answer(["cat", "dog", "fox"], p) == ("dog", 0.5, {"cat": 0.2, "dog": 0.5, "fox": 0.3})
    assert answer(["cat", "dog", "fox"], p, index=0) == ("cat", 0.2, {"cat": 0.2, "dog": 0.5, "fox": 0.3})
    label, prob, probs = answer(["cat", "dog"], np.array([0.4, 0.6], "float32"))
    assert type(prob) is float and all(type(v) is float for v in probs.values())
    with pytest.raises(ValueError):
        answer(["cat", "dog"], np.array([0.2, 0.5, 0.3]))  # a model with more outputs than classes


def test_prediction_to_dict_gives_the_answer_or_the_error():
    ok = Prediction(Path("a.jpg"), "cat", 0.9, {"cat": 0.9, "dog": 0.1})
    assert ok.to_dict() == {"path": "a.jpg", "label": "cat", "probability": 0.9,
                            "probabilities": {"cat": 0.9, "dog": 0.1}}
    assert Prediction(Path("b.jpg"), error="not an image").to_dict() == {"path": "b.jpg", "error": "not an image"}


def test_decoded_chunks_keep_the_order_and_name_each_unreadable_file(tmp_path):
    good = write_images(tmp_path, 5, size=16)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    files = [good[0], bad, *good[1:]]
    chunks = list(decoded_chunks(files, (8, 12), "pad", 2))
    assert [c for c, _, _ in chunks] == [files[0:2], files[2:4], files[4:6]]
    assert [len(p) for _, p, _ in chunks] == [1, 2, 2]
    assert chunks[0][2] == {bad: "not an image (unrecognised format)"}
    assert all(not failed for _, _, failed in chunks[1:])
    from catdog.images import load_image
    for (chunk, pixels, failed) in chunks:
        wanted = [load_image(f, (8, 12), "pad") for f in chunk if f not in failed]
        assert all(p.shape == (8, 12, 3) and (p == w).all() for p, w in zip(pixels, wanted, strict=True))
    assert list(decoded_chunks(files[:2], (8, 8), "squash", 5))[0][0] == files[:2]


def test_an_arrays_answer_has_no_path():
    assert Prediction(None, label="cat", probability=0.9).to_dict()["path"] is None
    assert Prediction(None, error="not RGB").to_dict() == {"path": None, "error": "not RGB"}

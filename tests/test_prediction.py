"""Answering for new photos: the files a folder expands to, and a model's output turned into answers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_images

from catdog.prediction import Prediction, answer, as_class_probabilities, decoded_chunks, expand


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

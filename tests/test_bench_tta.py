"""scripts/bench_tta.py: its views, and that it scores a run as `catdog evaluate` does."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location("bench_tta", Path(__file__).parents[1] / "scripts" / "bench_tta.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_views_keep_the_size_and_move_the_pixels_as_named():
    batch = np.arange(2 * 20 * 20 * 3, dtype="float32").reshape(2, 20, 20, 3)
    for views in bench.SETS.values():
        for name in views:
            assert bench.view(batch, name).shape == batch.shape, name
    np.testing.assert_array_equal(bench.view(batch, "mirror"), batch[:, :, ::-1])
    # A shift of 5% of 20 pixels: one column or row, the content moving the named way.
    np.testing.assert_array_equal(bench.view(batch, "right")[:, :, 1:], batch[:, :, :-1])
    np.testing.assert_array_equal(bench.view(batch, "left")[:, :, :-1], batch[:, :, 1:])
    np.testing.assert_array_equal(bench.view(batch, "down")[:, 1:], batch[:, :-1])
    np.testing.assert_array_equal(bench.view(batch, "up")[:, :-1], batch[:, 1:])
    # The zoom scales the centre up: a row spans fewer of the photo's columns, around the same middle.
    row, zoomed = batch[0, 10, :, 0], bench.view(batch, "zoom")[0, 10, :, 0]
    assert np.ptp(zoomed) < np.ptp(row)
    assert float(zoomed.mean()) == pytest.approx(float(row.mean()), abs=3.0)  # one column is 3


def test_the_photo_and_the_mirror_score_as_catdog_evaluate_does(trained):
    import keras

    import catdog.layers  # noqa: F401
    from catdog.evaluation import evaluate

    run, photos = trained
    classes = json.loads((run / "classes.json").read_text())
    paths, labels = bench.photos(photos, None, classes)
    model = keras.saving.load_model(run / "model.keras")
    accuracy, per_view = bench.score(model, bench.load(paths, (24, 24), "squash"), labels)
    assert per_view > 0
    assert accuracy["photo"] == pytest.approx(evaluate(run, photos, out=run.parent / "plain").accuracy)
    assert accuracy["+ mirror (catdog's --tta)"] == pytest.approx(
        evaluate(run, photos, tta=True, out=run.parent / "tta").accuracy)

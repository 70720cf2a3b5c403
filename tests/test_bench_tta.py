"""scripts/bench_tta.py: its views, and that it scores a run as `catdog evaluate` does."""

from __future__ import annotations

import importlib.util
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


def test_the_photo_and_the_mirror_score_as_catdog_evaluate_does(trained, tmp_path):
    from catdog.evaluation import evaluate
    from catdog.runs import load_run

    run, photos = trained
    loaded = load_run(run)
    scored = bench.scored_photos(loaded, photos)
    held, per_view = bench.score(loaded.model, *scored["held_out"])
    test, _ = bench.score(loaded.model, *scored["test"])
    assert per_view > 0
    for tta, label in ((False, "photo"), (True, "+ mirror (catdog's --tta)")):
        on_held_out = evaluate(run, tta=tta, out=tmp_path / f"held-out-{tta}")
        on_folder = evaluate(run, photos, tta=tta, out=tmp_path / f"folder-{tta}")
        # The same photos in the same order (their labels), then the same accuracy.
        np.testing.assert_array_equal(scored["held_out"][1], on_held_out.labels)
        np.testing.assert_array_equal(scored["test"][1], on_folder.labels)
        assert held[label] == pytest.approx(on_held_out.accuracy)
        assert test[label] == pytest.approx(on_folder.accuracy)

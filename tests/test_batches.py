"""Feeding Keras: CutMix and the batches read from the cache."""

from __future__ import annotations

import numpy as np
import pytest

from catdog.batches import batches, cutmix


def flat_photos(n: int = 6, size: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Photo k is the constant k + 1 everywhere; its target is one-hot over n classes."""
    x = np.repeat(np.arange(1, n + 1, dtype="uint8"), size * size * 3).reshape(n, size, size, 3)
    return x, np.eye(n, dtype="float32")


def test_cutmix_pastes_one_box_and_mixes_targets_by_area():
    x, y = flat_photos()
    for trial in range(20):
        mixed, targets = cutmix(x, y, np.random.default_rng(trial))
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        for k in range(len(x)):
            own = (mixed[k] == k + 1).all(axis=-1)
            values = set(np.unique(mixed[k]))
            assert values <= {k + 1, *range(1, len(x) + 1)} and len(values) <= 2
            # The target credits each photo with the share of pixels it shows.
            assert targets[k, k] == pytest.approx(own.mean() if len(values) == 2 else 1.0, abs=1e-6)
            if len(values) == 2:
                rows, cols = np.nonzero(~own)  # the pasted part is one rectangle
                assert (~own[rows.min():rows.max() + 1, cols.min():cols.max() + 1]).all()
                partner = values.difference({k + 1}).pop() - 1
                assert targets[k, partner] == pytest.approx(1 - own.mean(), abs=1e-6)
    np.testing.assert_array_equal(x, flat_photos()[0])  # the cached photos are never written to


def test_batches_cutmix_with_its_probability_and_repeats_with_the_seed():
    x, y = flat_photos(8)
    plain = batches(x, np.arange(8), y, 4, shuffle=True, seed=3)
    mixed = batches(x, np.arange(8), y, 4, shuffle=True, seed=3, mix=1.0)
    again = batches(x, np.arange(8), y, 4, shuffle=True, seed=3, mix=1.0)
    for i in range(2):
        px, py = plain[i]
        assert set(np.unique(py)) == {0.0, 1.0}
        mx, my = mixed[i]
        assert (mx != px).any() or (my == py).all()  # a box may come out empty at a corner
        ax, ay = again[i]
        np.testing.assert_array_equal(mx, ax)
        np.testing.assert_array_equal(my, ay)
    # Some batch over a few epochs is really mixed.
    soft = False
    for _ in range(5):
        mixed.on_epoch_end()
        soft |= any(not set(np.unique(mixed[i][1])) <= {0.0, 1.0} for i in range(2))
    assert soft

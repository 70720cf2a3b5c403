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


def test_targets_are_one_hot_rows_or_a_sigmoid_column():
    from catdog.batches import targets
    labels = np.array([1, 0, 2])
    soft = targets(labels, 3, sigmoid=False)
    assert soft.dtype == np.float32
    np.testing.assert_array_equal(soft, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    column = targets(np.array([1, 0, 1]), 2, sigmoid=True)
    assert column.dtype == np.float32 and column.shape == (3, 1)
    np.testing.assert_array_equal(column, [[1], [0], [1]])


def test_cutmix_box_is_centred_on_its_draw_and_sized_by_lam():
    # 1 - lam of the photo, at a uniform centre, clipped at the borders: the box the same draws give.
    x, y = flat_photos(4, size=40)
    for trial in range(30):
        mixed, targets = cutmix(x, y, np.random.default_rng(trial))
        assert targets.dtype == y.dtype
        rng = np.random.default_rng(trial)
        partner = rng.permutation(4)
        cut = np.sqrt(1.0 - rng.uniform())
        cy, cx = rng.integers(40), rng.integers(40)
        half = round(cut * 40 / 2)
        top, bottom, left, right = max(cy - half, 0), min(cy + half, 40), max(cx - half, 0), min(cx + half, 40)
        expected = x.copy()
        expected[:, top:bottom, left:right] = x[partner, top:bottom, left:right]
        np.testing.assert_array_equal(mixed, expected)


def test_batches_in_order_cover_every_index_once():
    x, y = flat_photos(7)
    plain = batches(x, np.array([6, 0, 5, 1, 4, 2, 3]), y, 3)
    assert len(plain) == 3
    got = [plain[i] for i in range(3)]
    # Sorted within a batch, batches in the order given, the last one short.
    assert [b[0][:, 0, 0, 0].tolist() for b in got] == [[1, 6, 7], [2, 3, 5], [4]]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y[[0, 5, 6, 1, 2, 4, 3]])
    images_only = batches(x, np.arange(7), None, 4)
    assert len(images_only[1]) == 1 and images_only[1][0].shape == (3, 10, 10, 3)
    plain.on_epoch_end()  # no shuffle: the same order every epoch
    assert plain[0][0][:, 0, 0, 0].tolist() == [1, 6, 7]


def test_a_resumed_run_shuffles_as_the_uninterrupted_one():
    x, y = flat_photos(8)
    fresh = batches(x, np.arange(8), y, 8, shuffle=True)
    assert (fresh[0][0] == batches(x, np.arange(8), y, 8, shuffle=True, seed=0)[0][0]).all()
    for epoch in range(1, 4):
        fresh.on_epoch_end()
        resumed = batches(x, np.arange(8), y, 8, shuffle=True, first_epoch=epoch)
        np.testing.assert_array_equal(resumed.order, fresh.order)
    assert len({tuple(batches(x, np.arange(8), y, 8, shuffle=True, first_epoch=e).order) for e in range(4)}) == 4


def test_the_default_seed_is_zero():
    x, y = flat_photos(8)
    default = batches(x, np.arange(8), y, 8, shuffle=True)
    np.testing.assert_array_equal(default.order, batches(x, np.arange(8), y, 8, shuffle=True, seed=0).order)
    assert (default.order != batches(x, np.arange(8), y, 8, shuffle=True, seed=1).order).any()

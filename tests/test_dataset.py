from __future__ import annotations

import numpy as np
import pytest
from conftest import write_images

from catdog.dataset import batches, cutmix, discover, split_indices
from catdog.errors import DataError


def test_class_folders(tiny_data):
    (tiny_data / "cats" / ".DS_Store").write_bytes(b"junk")
    found = discover(tiny_data)
    assert found.classes == ["cats", "dogs"] and found.layout == "class folders"
    assert len(found.files) == 48 and found.labels.count(0) == 24
    assert ("cats/.DS_Store", "hidden or system file") in found.ignored


def test_nested_class_folders_like_petimages(tmp_path):
    write_images(tmp_path / "PetImages" / "Cat" / "batch1", 3)
    write_images(tmp_path / "PetImages" / "Dog", 2)
    found = discover(tmp_path / "PetImages")
    assert found.classes == ["Cat", "Dog"] and len(found.files) == 5


def test_kaggle_flat_names(tmp_path):
    for i in range(3):
        for kind in ("cat", "dog"):
            write_images(tmp_path / "x", 1)[0].rename(tmp_path / f"{kind}.{i}.jpg")
    (tmp_path / "x").rmdir()
    (tmp_path / "notes.txt").write_text("hi")
    found = discover(tmp_path)
    assert found.layout == "flat names" and found.classes == ["cat", "dog"] and len(found.files) == 6
    assert found.ignored == [("notes.txt", "no class in the name (expected e.g. cat.12.jpg)")]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="data folder not found: .*missing"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found in"):
        discover(tmp_path / "empty")
    write_images(tmp_path / "one" / "cats", 2)
    with pytest.raises(DataError, match=r"only one class found in .*one \(cats\)"):
        discover(tmp_path / "one")
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dogs holds no files"):
        discover(tmp_path / "one")


def test_split_is_stratified_and_seeded():
    labels = np.array([0] * 70 + [1] * 30)
    tr, va, te = split_indices(labels, (0.2, 0.1), seed=3)
    assert len(set(tr) | set(va) | set(te)) == 100 and not set(tr) & set(va) and not set(va) & set(te)
    assert (labels[va] == 0).sum() == 14 and (labels[va] == 1).sum() == 6
    assert (labels[te] == 0).sum() == 7 and (labels[te] == 1).sum() == 3
    again = split_indices(labels, (0.2, 0.1), seed=3)
    assert all((a == b).all() for a, b in zip((tr, va, te), again, strict=True))
    other = split_indices(labels, (0.2, 0.1), seed=4)
    assert not (other[1] == va).all()


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

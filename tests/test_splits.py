from __future__ import annotations

import numpy as np
import pytest
from conftest import write_images

from catdog.config import load_config
from catdog.errors import DataError
from catdog.splits import split_indices
from catdog.training import load_data


def test_split_by_fractions_is_recorded(tiny_data):
    config = load_config(None, ["data.image_size=8", "data.test_split=0.25", "data.validation_split=0.25"])
    sp = load_data(config, tiny_data)
    assert (len(sp.train_idx), len(sp.val_idx), len(sp.test_idx)) == (24, 12, 12)
    record = sp.record()
    assert not set(record["train"]) & set(record["validation"]) and not set(record["train"]) & set(record["test"])
    assert load_data(config, tiny_data).record() == record  # same seed, same split


def test_separate_validation_folder(tiny_data, tmp_path):
    write_images(tmp_path / "val" / "cats", 5, seed=7)
    write_images(tmp_path / "val" / "dogs", 6, seed=8, bright=True)
    config = load_config(None, ["data.image_size=8", f"data.validation_dir={tmp_path / 'val'}"])
    sp = load_data(config, tiny_data)
    assert len(sp.train_idx) == 48 and len(sp.val_idx) == 11
    assert sp.record()["validation_root"] == str((tmp_path / "val").resolve())


def test_validation_folder_with_unknown_class(tiny_data, tmp_path):
    write_images(tmp_path / "val" / "birds", 2)
    config = load_config(None, ["data.image_size=8", f"data.validation_dir={tmp_path / 'val'}"])
    with pytest.raises(DataError, match="has classes the model does not know: birds"):
        load_data(config, tiny_data)


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

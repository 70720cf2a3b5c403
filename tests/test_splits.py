from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_images

from catdog.config import load_config
from catdog.errors import ConfigError, DataError
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


def test_too_few_photos_names_the_class():
    labels = np.array([0] * 10 + [1] * 2)
    with pytest.raises(DataError) as caught:
        split_indices(labels, (0.3, 0.3), seed=0, classes=["cats", "dogs"])
    assert str(caught.value) == ("class dogs has 2 usable images: too few to hold out 1 for validation and 1 for test "
                                 "(data.validation_split 0.3, data.test_split 0.3) and still train; add photos or "
                                 "lower the fractions")


def test_fractions_that_sum_past_one_are_refused_before_any_photo_is_read(tmp_path):
    from catdog.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "not-read"), "--set",
                                       "data.validation_split=0.6", "--set", "data.test_split=0.5"])
    assert result.exit_code == 1
    assert result.output == ("Error: data.validation_split (0.6) + data.test_split (0.5) = 1.1 leaves no photos to "
                             "train on; together they must stay below 1 (e.g. 0.2 and 0.1)\n")
    with pytest.raises(ConfigError, match=r"= 1 leaves no photos"):
        split_indices(np.zeros(20, int), (0.5, 0.5), seed=0)


def test_a_class_folder_of_unusable_files_is_an_error_naming_it(tiny_data):
    from catdog.cli import main

    for i, path in enumerate(sorted((tiny_data / "dogs").iterdir())):
        path.write_bytes(b"" if i % 2 else b"<html>not a photo</html>")
    result = CliRunner().invoke(main, ["prepare", "--data", str(tiny_data), "--set", "data.image_size=8"])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: class folder {tiny_data / 'dogs'}: none of its 24 files is a usable "
                                    f"image (reasons in ")
    assert result.output.endswith("skipped.txt); add readable photos or remove the class\n")
def test_split_keeps_each_of_three_classes_apart():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 30)
    tr, va, te = split_indices(labels, (0.1, 0.2), seed=0)
    assert [int((labels[va] == c).sum()) for c in range(3)] == [1, 2, 3]
    assert [int((labels[te] == c).sum()) for c in range(3)] == [2, 4, 6]
    assert [int((labels[tr] == c).sum()) for c in range(3)] == [7, 14, 21]
    assert sorted([*tr, *va, *te]) == list(range(60))


def test_a_small_fraction_still_holds_out_one_photo_of_each_class():
    labels = np.array([0] * 5 + [1] * 5)
    tr, va, te = split_indices(labels, (0.05, 0.05), seed=0)
    assert (len(tr), len(va), len(te)) == (6, 2, 2)
    assert sorted(labels[va]) == [0, 1] and sorted(labels[te]) == [0, 1]
    tr, va, te = split_indices(labels, (0.0, 0.0), seed=0)
    assert (len(tr), len(va), len(te)) == (10, 0, 0)


def test_a_class_too_small_to_split_and_train_is_refused():
    labels = np.array([0] * 6 + [1] * 2)
    with pytest.raises(DataError) as exc:
        split_indices(labels, (0.2, 0.2), seed=0)  # 1 + 1 of 2 leaves none to train on
    assert str(exc.value) == ("class 1 has 2 usable images: too few to hold out 1 for validation and 1 for test "
                              "(data.validation_split 0.2, data.test_split 0.2) and still train; add photos or "
                              "lower the fractions")
    tr, _, _ = split_indices(np.array([0] * 6 + [1] * 3), (0.2, 0.2), seed=0)  # 1 + 1 of 3 leaves one
    assert len(tr) == 5


def test_data_dir_is_the_flag_or_the_config():
    from catdog.splits import data_dir
    assert data_dir(load_config(None, ["data.dir=photos"]), None) == Path("photos")
    assert data_dir(load_config(None, ["data.dir=photos"]), "other") == Path("other")
    with pytest.raises(DataError) as exc:
        data_dir(load_config(None), None)
    assert str(exc.value) == "no data folder given: pass --data DIR or set data.dir in the config"


def test_the_record_names_every_split_by_its_folder(tiny_data, tmp_path):
    write_images(tmp_path / "val" / "cats", 2, seed=7)
    write_images(tmp_path / "val" / "dogs", 2, seed=8, bright=True)
    config = load_config(None, ["data.image_size=8", "data.test_split=0.25", f"data.validation_dir={tmp_path / 'val'}"])
    record = load_data(config, tiny_data).record()
    assert set(record) == {"root", "validation_root", "train", "validation", "test"}
    assert record["root"] == str(tiny_data.resolve())
    assert record["validation_root"] == str((tmp_path / "val").resolve())
    assert record["validation"] == ["cats/img_000.jpg", "cats/img_001.jpg", "dogs/img_000.jpg", "dogs/img_001.jpg"]
    assert len(record["train"]) == 36 and len(record["test"]) == 12
    assert all((tiny_data / f).is_file() for f in record["train"] + record["test"])


def test_prepare_folder_uses_the_configs_cache_and_reports_progress(tiny_data, tmp_path):
    from catdog.splits import prepare_folder
    config = load_config(None, ["data.image_size=8", f"data.cache_dir={tmp_path / 'cache'}", "data.workers=1"])
    calls = []
    prepared = prepare_folder(config, tiny_data, progress=lambda done, total: calls.append((done, total)))
    assert len(prepared.files) == 48 and prepared.images[np.array([0])].shape == (1, 8, 8, 3)
    assert any((tmp_path / "cache").rglob("*")) and calls and calls[-1][1] == 48


def test_prepare_folder_holds_a_folder_to_the_models_classes(tiny_data, tmp_path):
    from catdog.splits import prepare_folder
    config = load_config(None, ["data.image_size=8", f"data.cache_dir={tmp_path / 'cache'}", "data.workers=1"])
    with pytest.raises(DataError, match=r"has classes the model does not know: dogs \(model classes: cats, birds\)"):
        prepare_folder(config, tiny_data, classes=["cats", "birds"])
    assert prepare_folder(config, tiny_data, classes=["dogs", "cats"]).labels[0] == 1  # cats/ is class 1


def test_a_flat_class_of_unusable_files_is_named_by_its_file_names(tmp_path):
    from catdog.splits import prepare_folder
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, path in enumerate(write_images(tmp_path / "made", 6)):
        path.rename(flat / f"cat.{i}.jpg")
        (flat / f"dog.{i}.jpg").write_bytes(b"not a photo")
    config = load_config(None, ["data.image_size=8", f"data.cache_dir={tmp_path / 'cache'}", "data.workers=1"])
    with pytest.raises(DataError) as exc:
        prepare_folder(config, flat)
    assert str(exc.value).startswith(f"{flat}: the files named dog.<number>: none of its 6 files is a usable image")


def test_a_class_too_small_to_split_is_named_by_its_folder(tmp_path):
    from catdog.splits import prepare_folder, split
    write_images(tmp_path / "photos" / "cats", 6, seed=1)
    write_images(tmp_path / "photos" / "dogs", 2, seed=2, bright=True)
    config = load_config(None, ["data.image_size=8", f"data.cache_dir={tmp_path / 'cache'}", "data.workers=1",
                                "data.validation_split=0.2", "data.test_split=0.2"])
    with pytest.raises(DataError, match=r"^class dogs has 2 usable images"):
        split(config, prepare_folder(config, tmp_path / "photos"))

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from conftest import train_tiny_run, write_images

from catdog.cli import main
from catdog.config import load_config
from catdog.evaluation import evaluate
from catdog.leaks import HASHES_FILE, LEAKS_FILE, check_split, pixel_hashes
from catdog.training import load_data


def _checked(config_sets: list[str], data: Path, run_dir: Path) -> tuple[list[str], object]:
    run_dir.mkdir()
    said: list[str] = []
    leaks = check_split(load_data(load_config(None, config_sets), data), run_dir, said.append)
    return said, leaks


def test_a_clean_split_says_nothing_and_records_the_training_hashes(tiny_data, tmp_path):
    sets = ["data.image_size=8", "data.test_split=0.25", "data.validation_split=0.25"]
    said, leaks = _checked(sets, tiny_data, tmp_path / "run")
    assert said == [] and not leaks and not (tmp_path / "run" / LEAKS_FILE).exists()
    recorded = json.loads((tmp_path / "run" / HASHES_FILE).read_text())["training"]
    assert len(recorded) == 24 and all(len(h) == 32 for h in recorded)


def test_a_training_photo_copied_into_the_validation_folder_is_named(tiny_data, tmp_path):
    write_images(tmp_path / "val" / "cats", 3, seed=7)
    write_images(tmp_path / "val" / "dogs", 3, seed=8, bright=True)
    shutil.copy(tiny_data / "dogs" / "img_005.jpg", tmp_path / "val" / "dogs" / "copy.jpg")
    sets = ["data.image_size=8", f"data.validation_dir={tmp_path / 'val'}"]
    said, leaks = _checked(sets, tiny_data, tmp_path / "run")
    listed = tmp_path / "run" / LEAKS_FILE
    assert said == [f"warning: 1 of the validation and test photos is a training photo too (same pixels), "
                    f"e.g. val/dogs/copy.jpg = photos/dogs/img_005.jpg; list in {listed}"]
    assert listed.read_text() == "scored val/dogs/copy.jpg = training photos/dogs/img_005.jpg\n"


def test_a_photo_filed_in_both_classes_is_named_with_its_classes(tiny_data, tmp_path):
    shutil.copy(tiny_data / "cats" / "img_003.jpg", tiny_data / "dogs" / "also_a_cat.jpg")
    said, leaks = _checked(["data.image_size=8", "data.validation_split=0"], tiny_data, tmp_path / "run")
    assert said == [f"warning: 1 photo is filed in two classes (same pixels), e.g. photos/cats/img_003.jpg (cats) = "
                    f"photos/dogs/also_a_cat.jpg (dogs); list in {tmp_path / 'run' / LEAKS_FILE}"]


def test_the_same_pixels_under_another_name_in_one_class_is_a_leak_across_the_split(tiny_data, tmp_path):
    # Copies of one photo within a class end up in train and validation of a validation_split.
    for i in range(24):
        shutil.copy(tiny_data / "cats" / "img_000.jpg", tiny_data / "cats" / f"dup_{i:02d}.jpg")
    said, leaks = _checked(["data.image_size=8", "data.validation_split=0.25"], tiny_data, tmp_path / "run")
    assert len(said) == 1 and leaks.shared and not leaks.two_classes


def test_hashes_follow_the_pixels_not_the_file(tiny_data):
    prepared = load_data(load_config(None, ["data.image_size=8", "data.validation_split=0"]), tiny_data).train
    hashes = pixel_hashes(prepared)
    assert len(set(hashes)) == len(hashes) == 48
    assert pixel_hashes(prepared, prepared.rows[:0]) == []


def test_train_and_evaluate_on_training_photos_mark_the_report_leaky(tmp_path):
    write_images(tmp_path / "val" / "cats", 2, seed=1)  # the same pixels as photos/cats/img_000..001
    write_images(tmp_path / "val" / "dogs", 2, seed=9, bright=True)
    run, photos = train_tiny_run(tmp_path, "train.epochs=1", "data.image_size=8", "train.batch_size=8",
                                 f"data.validation_dir={tmp_path / 'val'}")
    assert "scored val/cats/img_000.jpg = training photos/cats/img_000.jpg\n" in (run / LEAKS_FILE).read_text()

    report = evaluate(run, photos)
    assert report.leaky and len(report.leaks.shared) == 24
    saved = json.loads((report.out_dir / "report.json").read_text())
    assert saved["leaky"] is True and saved["leaks"]["training_photos"] == 24
    assert saved["leaks"]["list"] == str(report.out_dir / LEAKS_FILE)
    table = report.table()
    assert "(LEAKY: see the warnings below)" in table.splitlines()[0]
    assert "warning: 24 of the photos scored are training photos too (same pixels), e.g. " in table

    write_images(tmp_path / "new" / "cats", 3, seed=11)
    write_images(tmp_path / "new" / "dogs", 3, seed=12, bright=True)
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run), "--data", str(tmp_path / "new"), "--json"])
    assert result.exit_code == 0, result.output
    clean = json.loads(result.stdout)
    assert clean["leaky"] is False and clean["leaks"]["training_photos"] == 0 and clean["leaks"]["list"] is None

    # A run trained before the hashes were recorded: said, not silently passed as clean.
    (run / HASHES_FILE).unlink()
    older = evaluate(run, photos, out=tmp_path / "older")
    assert older.to_dict()["leaks"]["checked"] is False
    assert f"note: the run has no {HASHES_FILE} (trained by an older catdog)" in older.table()

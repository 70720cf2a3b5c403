"""The Python API (`import catdog`): each function on a tiny run, and its errors."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from conftest import write_images
from PIL import Image

import catdog


@pytest.fixture(scope="module")
def trained_by_api(tmp_path_factory):
    """(run, photo folder, report lines, progress calls, what was printed): one tiny run trained
    through catdog.train, 12 dark 'cats' and 12 bright 'dogs', a quarter held out for testing."""
    root = tmp_path_factory.mktemp("api")
    photos = root / "photos"
    write_images(photos / "cats", 12, seed=1)
    write_images(photos / "dogs", 12, seed=2, bright=True)
    config = catdog.load_config("article", {"train.epochs": 1, "data.image_size": 24, "train.batch_size": 8,
                                            "data.test_split": 0.25, "data.cache_dir": root / "cache"})
    lines: list[str] = []
    calls: list[tuple[int, int]] = []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        run = catdog.train(config, photos, root / "run", report=lines.append,
                           progress=lambda done, total: calls.append((done, total)))
    return run, photos, lines, calls, printed.getvalue()


@pytest.fixture(scope="module")
def run(trained_by_api):
    return catdog.open_run(trained_by_api[0].dir)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_load_config_by_name_or_file_with_overrides_as_a_mapping_or_strings(tmp_path):
    base = catdog.load_config("small")
    assert base == catdog.load_config("small.yaml") and base.data.image_size == (160, 160)
    mapped = catdog.load_config("small", {"train.epochs": 2, "data.image_size": [32, 48], "data.resize": "crop"})
    listed = catdog.load_config("small", ["train.epochs=2", "data.image_size=[32, 48]", "data.resize=crop"])
    assert mapped == listed
    assert (mapped.train.epochs, mapped.data.image_size, mapped.data.resize) == (2, (32, 48), "crop")
    assert mapped.model == base.model  # the rest of the file stays as it was
    (tmp_path / "mine.yaml").write_text("train:\n  epochs: 3\n")
    assert catdog.load_config(tmp_path / "mine.yaml").train.epochs == 3
    assert catdog.load_config().model.name == "article"  # the defaults
    assert catdog.load_config(overrides={"data.cache_dir": tmp_path}).data.cache_dir == str(tmp_path)
    # Values keep their Python type: a string YAML would read as something else stays that string.
    assert catdog.load_config(overrides={"data.dir": "no"}).data.dir == "no"
    assert catdog.load_config(overrides={"data.dir": "cats: dogs"}).data.dir == "cats: dogs"


def test_load_config_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(catdog.ConfigError, match=r"no config file or built-in config named smal; did you mean small\?"):
        catdog.load_config("smal")
    with pytest.raises(catdog.ConfigError, match=r"unknown config key train\.epoch .*did you mean train\.epochs\?"):
        catdog.load_config("small", {"train.epoch": 2})
    with pytest.raises(catdog.ConfigError, match=r"train\.epochs"):
        catdog.load_config(overrides={"train.epochs": -1})
    with pytest.raises(catdog.ConfigError, match="got the single string 'train.epochs=2'"):
        catdog.load_config(overrides="train.epochs=2")  # type: ignore[arg-type]
    with pytest.raises(catdog.ConfigError, match="each item of a list is a 'key=value' string; got 3"):
        catdog.load_config(overrides=["train.epochs=2", 3])  # type: ignore[list-item]


def test_train_returns_the_run_and_reports_through_callbacks_only(trained_by_api, tmp_path):
    run, photos, lines, calls, printed = trained_by_api
    assert isinstance(run, catdog.Run) and run.dir.name == "run" and (run.dir / "model.keras").is_file()
    assert run.classes == ["cats", "dogs"] and run.config.data.image_size == (24, 24)
    assert isinstance(run.result, catdog.TrainResult) and run.result.epochs == 1
    assert any(line.startswith("epoch 1/1") for line in lines) and calls[-1] == (24, 24)
    assert printed == ""  # the library never prints
    answers = run.predict(photos / "dogs")
    assert [a.path.name for a in answers if a.path] == [f"img_{i:03d}.jpg" for i in range(12)]
    with pytest.raises(catdog.RunError, match="already exists and is not empty"):
        catdog.train(run.config, photos, run.dir)


def test_predict_files_folders_arrays_and_batches(run, trained_by_api):
    photos = trained_by_api[1]
    files = sorted((photos / "cats").iterdir())[:3] + sorted((photos / "dogs").iterdir())[:3]
    by_file = run.predict(files)
    for p in by_file:
        assert p.label in run.classes and p.error is None
        assert p.probability == max(p.probabilities.values())
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    arrays = [pixels(f) for f in files]
    by_array = run.predict(arrays)
    by_batch = run.predict(np.stack(arrays))
    for f, a, b in zip(by_file, by_array, by_batch, strict=True):
        assert a.path is None and (a.label, b.label) == (f.label, f.label)
        assert a.probabilities == pytest.approx(f.probabilities, abs=1e-6)
        assert b.probabilities == pytest.approx(f.probabilities, abs=1e-6)
    one = run.predict(arrays[0])
    assert len(one) == 1 and one[0].probabilities == pytest.approx(by_file[0].probabilities, abs=1e-6)
    assert [p.path for p in run.predict(files[0])] == [files[0]]
    assert list(catdog.predict(files, run.dir)) == by_file  # the CLI's function, given the folder


def test_an_array_of_any_size_is_fitted_as_its_photo_file_is(run, tmp_path):
    rng = np.random.default_rng(7)
    photo = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)  # not the model's size, nor its shape
    Image.fromarray(photo).save(tmp_path / "photo.png")  # lossless: the same pixels on disk
    (from_file,) = run.predict(tmp_path / "photo.png")
    (from_array,) = run.predict(photo)
    assert from_array.probabilities == pytest.approx(from_file.probabilities, abs=1e-6)
    # Not just any answer: a differently fitted array answers differently.
    (other,) = run.predict(np.ascontiguousarray(photo[:, :45]))
    assert other.probabilities != pytest.approx(from_file.probabilities, abs=1e-6)


def test_evaluate_a_folder(run, trained_by_api):
    photos = trained_by_api[1]
    report = run.evaluate(photos)
    assert isinstance(report, catdog.EvalReport) and report.count == 24 and 0 <= report.accuracy <= 1
    assert report.classes == run.classes and sum(map(sum, report.confusion)) == 24
    again = catdog.evaluate(run.dir, photos)  # the CLI's function
    assert again.accuracy == report.accuracy and again.log_loss == pytest.approx(report.log_loss)
    assert run.evaluate().count > 0  # the run's held-out split


@pytest.mark.parametrize(("bad", "message"), [
    (np.zeros((16, 16), np.uint8), r"^expected an \(height, width, 3\) array of RGB pixels or an \(N, height, width, "
                                   r"3\) batch; got shape \(16, 16\)$"),
    (np.zeros((16, 16, 4), np.uint8), r"^array 0 of 1: expected an \(height, width, 3\) array of RGB pixels; "
                                      r"got shape \(16, 16, 4\)$"),
    (np.zeros((16, 16, 3), np.float32), r"^array 0 of 1: expected uint8 pixels \(0-255\); got float32 "),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 3), np.uint8)], r"^array 1 of 2: .*got shape \(0, 8, 3\)$"),
    ([np.zeros((8, 8, 3), np.uint8), "cat.jpg"], r"^give photos as paths or as arrays, not both in one call$"),
])
def test_bad_arrays_raise_one_clear_line(run, bad, message):
    with pytest.raises(catdog.ImageError, match=message):
        run.predict(bad)


def test_missing_things_raise_catdog_errors(run, tmp_path):
    with pytest.raises(catdog.RunError, match="run folder not found: .*nowhere"):
        catdog.open_run(tmp_path / "nowhere")
    with pytest.raises(catdog.DataError, match="nowhere"):
        run.evaluate(tmp_path / "nowhere")
    with pytest.raises(catdog.DataError, match="no files found in .*empty"):
        (tmp_path / "empty").mkdir()
        run.predict(tmp_path / "empty")
    with pytest.raises(catdog.DataError, match="nothing to predict"):
        run.predict([])
    assert issubclass(catdog.ImageError, catdog.CatdogError) and issubclass(catdog.CacheError, catdog.CatdogError)

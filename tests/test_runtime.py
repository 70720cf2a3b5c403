"""The files predict and serve read, checked before they are trusted: a model.onnx that is not the
run's current export (empty, damaged, stale, copied from another run) is passed over with one
warning line and Keras answers; a config.yaml edited after training stops in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from conftest import write_images  # noqa: E402

from catdog.cli import main  # noqa: E402
from catdog.config import load_config  # noqa: E402
from catdog.errors import RunError  # noqa: E402
from catdog.prediction import predict  # noqa: E402
from catdog.runs import load_run  # noqa: E402
from catdog.runtime import OnnxFallback, OnnxModel, onnx_model  # noqa: E402
from catdog.training import train  # noqa: E402

SETTINGS = ["data.image_size=20", "train.batch_size=8", "train.epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run A, run B, photos): two article runs of the same shape, from different seeds."""
    root = tmp_path_factory.mktemp("runtime")
    write_images(root / "photos" / "cats", 12, size=32, seed=1)
    write_images(root / "photos" / "dogs", 12, size=32, seed=2, bright=True)
    runs = []
    for name, seed in (("run-a", 1), ("run-b", 2)):
        config = load_config(None, [*SETTINGS, f"seed={seed}", f"data.cache_dir={root / 'cache'}"])
        train(config, root / "photos", root / name)
        runs.append(root / name)
    return runs[0], runs[1], root / "photos"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A copy of run A to damage (times kept, as `cp -a` keeps them)."""
    return Path(shutil.copytree(trained[0], tmp_path / "run-a"))


def answers(run_dir: Path, photos: Path) -> list[dict]:
    return [p.to_dict() for p in predict([photos], run_dir)]


def keras_answers(run_dir: Path, photos: Path, tmp_path: Path) -> list[dict]:
    """What Keras answers for the run: a copy without its model.onnx, which predict may not write."""
    copy = Path(shutil.copytree(run_dir, tmp_path / "keras-only"))
    (copy / "model.onnx").unlink()
    return [p.to_dict() for p in predict([photos], copy, write_onnx=False)]


def edit_contract(run_dir: Path, change) -> None:
    path = run_dir / "model.onnx.json"
    contract = json.loads(path.read_text())
    change(contract)
    path.write_text(json.dumps(contract))


def test_current_export_is_used_without_a_warning(trained, recwarn):
    assert isinstance(onnx_model(load_run(trained[0])), OnnxModel)
    assert not [w for w in recwarn if issubclass(w.category, OnnxFallback)]


def test_a_copied_run_folder_is_checked_by_its_digest(trained, tmp_path, recwarn):
    # A plain copy gives model.keras a new time: the tie then holds by the SHA-256 of its bytes.
    copy = Path(shutil.copytree(trained[0], tmp_path / "copy", copy_function=shutil.copyfile))
    assert (copy / "model.keras").stat().st_mtime_ns != (trained[0] / "model.keras").stat().st_mtime_ns
    assert isinstance(onnx_model(load_run(copy)), OnnxModel)
    assert not [w for w in recwarn if issubclass(w.category, OnnxFallback)]


def same_size_garbage(path: Path) -> None:
    size = path.stat().st_size
    path.write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])


DAMAGE = {
    "empty": (lambda run, other: (run / "model.onnx").write_bytes(b""),
              r"model\.onnx is 0 bytes, not the \d+ its export wrote"),
    "garbage of the same size": (lambda run, other: same_size_garbage(run / "model.onnx"),
                                 r"model\.onnx cannot be loaded by ONNX Runtime \(\w+: "),
    "copied from another run with its contract": (lambda run, other: [shutil.copy(other / name, run / name)
                                                                      for name in ("model.onnx", "model.onnx.json")],
                                                  r"model\.onnx was exported from another model\.keras"),
    # Only the file: as if it had the very size of ours, which the size check would catch first.
    "copied from another run without its contract": (lambda run, other: (
        shutil.copy(other / "model.onnx", run),
        edit_contract(run, lambda c: c.update(onnx_size=(run / "model.onnx").stat().st_size))),
        r"model\.onnx and model\.onnx\.json come from different exports"),
    "stale: model.keras replaced": (lambda run, other: shutil.copy(other / "model.keras", run),
                                    r"model\.onnx was exported from another model\.keras"),
    "no contract": (lambda run, other: (run / "model.onnx.json").unlink(),
                    r"model\.onnx\.json is missing or damaged"),
    "damaged contract": (lambda run, other: (run / "model.onnx.json").write_text("{"),
                         r"model\.onnx\.json is missing or damaged"),
    "an older export, not tied to its run": (lambda run, other: edit_contract(run, lambda c: c.pop("keras_sha256")),
                                             r"model\.onnx records no digest of the model\.keras"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_untrusted_model_onnx_warns_and_keras_answers(case, run, trained, tmp_path):
    damage, reason = DAMAGE[case]
    damage(run, trained[1])
    expected = keras_answers(run, trained[2], tmp_path)
    with pytest.warns(OnnxFallback, match=reason + r".*; Keras answers instead \(catdog export --run .* --force"):
        got = answers(run, trained[2])
    assert got == expected


def test_predict_command_says_why_in_one_warning_line(run, trained):
    (run / "model.onnx").write_bytes(b"")
    photo = next(trained[2].rglob("*.jpg"))
    result = CliRunner().invoke(main, ["predict", "--run", str(run), str(photo)])
    assert result.exit_code == 0, result.output
    size = json.loads((run / "model.onnx.json").read_text())["onnx_size"]
    assert result.stderr.splitlines() == [
        f"warning: {run}/model.onnx is {0} bytes, not the {size} its export wrote (damaged, or replaced); Keras "
        f"answers instead (catdog export --run {run} --force writes a current model.onnx)"]
    assert result.stdout.startswith(f"{photo}: ")


def edit_config(run_dir: Path, key: str, value) -> None:
    path = run_dir / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["data"][key] = value
    path.write_text(yaml.safe_dump(config))


@pytest.mark.parametrize(("key", "value", "onnx", "message"), [
    ("image_size", [24, 24], True, "data.image_size is [24, 24] but the model was trained with [20, 20] "
                                   "(recorded in model.onnx.json); restore data.image_size: [20, 20]"),
    ("image_size", [24, 24], False, "data.image_size is [24, 24] but model.keras takes 20x20 images; "
                                    "restore data.image_size: [20, 20]"),
    ("resize", "crop", True, "data.resize is crop but the model was trained with squash (recorded in "
                             "model.onnx.json); restore data.resize: squash"),
])
def test_config_edited_after_training_stops_in_one_line(run, trained, key, value, onnx, message):
    edit_config(run, key, value)
    if not onnx:
        (run / "model.onnx").unlink()
    with pytest.raises(RunError) as info:
        answers(run, trained[2])
    assert str(info.value).startswith(f"{run}/config.yaml: {message} ")
    result = CliRunner().invoke(main, ["predict", "--run", str(run), str(trained[2])])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {info.value}"]


def test_keras_checks_the_resize_mode_against_the_contract_too(run, trained):
    # --tta answers with Keras: the contract beside model.onnx still records the resize mode.
    edit_config(run, "resize", "pad")
    with pytest.raises(RunError, match=r"config\.yaml: data\.resize is pad but the model was trained with squash"):
        list(predict([trained[2]], run, tta=True))


@pytest.mark.parametrize("tta", [False, True], ids=["onnx", "keras"])
def test_classes_json_reordered_after_training_stops_in_one_line(run, trained, tta):
    # The same number of classes, so the model's outputs alone cannot tell; the contract can.
    (run / "classes.json").write_text('["dogs", "cats"]')
    with pytest.raises(RunError) as info:
        list(predict([trained[2]], run, tta=tta))
    assert str(info.value) == (f"{run}/classes.json names ['dogs', 'cats'] but the model was trained with "
                               f"['cats', 'dogs'] (recorded in model.onnx.json); restore the run's own classes.json "
                               f"or retrain")


def test_a_damaged_model_keras_is_the_one_line_not_the_fallback(run, trained):
    keras_file = run / "model.keras"
    keras_file.write_bytes(keras_file.read_bytes()[:1000])
    result = CliRunner().invoke(main, ["predict", "--run", str(run), str(trained[2])])
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {keras_file} is damaged or truncated (not a complete .keras archive); "
                             f"retrain, or copy the run folder again\n")

"""Faults a user can cause (issue 12): each ends in one line naming the file, key or value, with a
non-zero exit and no traceback; no wrong result exits 0; nothing is left running or blocking.

Downloads are covered in test_download.py (they need its 127.0.0.1 server); resume after a real
kill -9 is slow-marked here (`python -m pytest -m slow tests/test_faults.py`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_images
from PIL import Image

from catdog.cli import main, one_line
from catdog.config import load_config
from catdog.errors import ConfigError, TrainingError, shown

FAST = ["--set", "train.epochs=1", "--set", "data.image_size=16", "--set", "train.batch_size=8"]


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_error_line(result, line: str, code: int = 1) -> None:
    """The command failed with exactly `line` on stderr, nothing else there, and no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert error_line(result) == f"Error: {line}\n", result.stderr
    assert "Traceback" not in result.output


def error_line(result) -> str:
    """stderr after any progress bar (drawn with carriage returns), which must be its only line."""
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr.rsplit("\r", 1)[-1]


# --- numbers that pass the checks but are not numbers; sizes; seeds; workers ------------------


@pytest.mark.parametrize("override, line", [
    ("train.learning_rate=.nan", "train.learning_rate must be a finite number in (0.0, 10.0]; got nan (--set)"),
    ("train.learning_rate=.inf", "train.learning_rate must be a finite number in (0.0, 10.0]; got inf (--set)"),
    ("train.label_smoothing=nan", "train.label_smoothing must be a finite number in [0.0, 0.5]; got nan (--set)"),
    ("train.weight_decay=.inf", "train.weight_decay must be a finite number in [0.0, 1.0]; got inf (--set)"),
    ("model.rotation=-.inf", "model.rotation must be a finite number in [0.0, 1.0]; got -inf (--set)"),
    ("data.image_size=100000", "data.image_size must be an int or [height, width] of integers in [8, 2048]; "
                               "got [100000, 100000] (--set)"),
    ("seed=-1", "seed must be an integer in [0, 4294967295]; got -1 (--set)"),
    ("data.workers=100000", "data.workers must be an integer in [0, 1024]; got 100000 (--set)"),
    ("train.epochs=10000000000", "train.epochs must be an integer in [1, 1000000]; got 10000000000 (--set)"),
])
def test_numbers_that_are_not_numbers_or_too_big_are_refused(override, line):
    one_error_line(cli("summary", "--set", override), line)


def test_workers_are_capped_by_cores_and_work():
    from catdog.cache import worker_count

    assert worker_count(1024, 320, cpus=2) == 2
    assert worker_count(0, 320, cpus=2) == 2
    assert worker_count(0, 20, cpus=16) == 2  # 16 photos a chunk: 2 chunks of work
    assert worker_count(3, 10_000, cpus=16) == 3


# --- config files that attack --------------------------------------------------------------------


def bomb(levels: int = 9) -> str:
    """A config whose model.blocks is a few hundred bytes of nested aliases (9**levels values)."""
    rows = ["model:", "  blocks:", "    - &a0 [x, x, x, x, x, x, x, x, x]"]
    rows += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(rows) + "\n"


def test_yaml_alias_bomb_is_refused_fast_under_a_memory_limit(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    assert path.stat().st_size < 1000
    # 512 MB of address space is far below what expanding it (or printing it) would take.
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)); "
              "from catdog.cli import main; sys.argv = ['catdog', 'summary', '-c', sys.argv[1]]; main()")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 60
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr == (f"Error: {path}: expands to more than 10,000 values (YAML aliases nested in aliases?); "
                           "a config needs a few hundred\n")


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  optimizer: adam  # réglé\n".encode("latin-1"))
    one_error_line(cli("summary", "-c", path),
                   f"{path}: not UTF-8 text (byte 0xe9 at offset 29); save it as UTF-8")


def test_duplicate_keys_are_an_error_not_the_last_one_wins(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  epochs: 3\n  epochs: 5\n")
    one_error_line(cli("summary", "-c", path), f"{path}: not valid YAML at line 3 (duplicate key epochs)")


def test_merge_keys_and_anchors_of_a_real_config_still_load(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("model:\n  name: cnn\n  blocks:\n    - &b {filters: 8, convs: 2}\n    - {<<: *b, filters: 16}\n")
    blocks = load_config(path).model.blocks
    assert [(b.filters, b.convs) for b in blocks] == [(8, 2), (16, 2)]


def test_a_huge_value_is_never_printed_whole():
    result = cli("summary", "--set", "train.optimizer=" + "x" * 100_000)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert len(result.stderr) < 300
    assert result.stderr.startswith("Error: train.optimizer must be one of 'adam', 'adamw', 'sgd', 'rmsprop'; "
                                    "got 'xxxxxx")


def test_unknown_key_name_is_bounded_too(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(f"train:\n  {'k' * 1000}: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(str(exc.value)) < 1000 and "train.kkkk" in str(exc.value) and "k" * 100 not in str(exc.value)


# --- one place for expected failures, --debug for tracebacks --------------------------------------


def test_os_errors_are_one_line_with_their_path():
    assert one_line(OSError(errno.ENOSPC, "No space left on device", "/data/cache/images.u8")) == (
        "/data/cache/images.u8: No space left on device; free some space or point data.cache_dir / --out elsewhere")
    assert one_line(PermissionError(errno.EACCES, "Permission denied", "/r/a\nb")) == "/r/a\\nb: Permission denied"
    assert one_line(MemoryError()) == "out of memory; lower data.image_size, train.batch_size or train.micro_batch"


def test_an_os_error_from_a_command_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")  # the diagram's folder is a file
    one_error_line(cli("summary", "--set", "data.image_size=16", "--diagram", tmp_path / "file" / "d.png"),
                   f"{tmp_path / 'file'}: File exists")


def test_debug_flag_and_env_show_the_traceback():
    plain = cli("summary", "--set", "train.epochs=-3")
    assert plain.exit_code == 1 and isinstance(plain.exception, SystemExit)
    for result in (cli("--debug", "summary", "--set", "train.epochs=-3"),
                   cli("summary", "--set", "train.epochs=-3", env={"CATDOG_DEBUG": "1"})):
        assert result.exit_code == 1
        assert isinstance(result.exception, ConfigError)  # raised, with its traceback, not caught
    assert "--debug" in cli("--help").output


def test_shown_escapes_what_would_break_a_line():
    assert shown("cats/a\nb.jpg") == "cats/a\\nb.jpg"
    assert shown(os.fsdecode(b"cats/\xff.jpg")) == "cats/\\xff.jpg"
    assert shown(b"d\xe9j\xe0.jpg") == "d\\xe9j\\xe0.jpg"
    assert shown("chat-été.jpg") == "chat-été.jpg"
    assert shown("x" * 500, 10) == "xxxxxxxxxx..."


# --- training that does nothing, or diverges ------------------------------------------------------


def test_an_epoch_shorter_than_the_accumulation_still_updates(tiny_data, tmp_path):
    """batch 128 in micro-batches of 8 is 16 micro-batches an update; an epoch here has 5."""
    import keras

    from catdog.models import build_model
    from catdog.optimizers import accumulation
    from catdog.runs import load_run
    from catdog.training import train

    config = load_config(None, ["train.epochs=1", "data.image_size=16", "train.batch_size=128",
                                "train.micro_batch=8"])
    assert accumulation(config, 5) == 5 and accumulation(config, 40) == 16
    said = []
    result = train(config, tiny_data, tmp_path / "run", report=said.append)
    assert "an epoch has only 5 micro-batches: each update averages all 5 of them" in said
    trained = load_run(result.run_dir).model.get_weights()
    keras.backend.clear_session()
    initial = build_model(config, 2).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(initial, trained, strict=True))


def test_a_loss_that_is_not_finite_stops_training_loudly():
    from catdog.callbacks import finite_guard

    guard = finite_guard()
    guard.on_epoch_end(0, {"loss": 0.7, "val_loss": 0.69})
    with pytest.raises(TrainingError) as exc:
        guard.on_epoch_end(2, {"loss": float("nan"), "accuracy": 0.5})
    assert str(exc.value) == "training diverged: loss became nan in epoch 3; lower train.learning_rate"


def test_history_and_json_output_never_hold_bare_nan(tmp_path):
    from catdog.cli import dumps
    from catdog.runs import write_json

    write_json(tmp_path / "h.json", {"loss": [float("nan"), 0.5], "x": float("inf")})
    assert json.loads((tmp_path / "h.json").read_text(), parse_constant=pytest.fail) == {"loss": [None, 0.5], "x": None}
    assert dumps({"log_loss": float("nan")}) == '{"log_loss": null}'


def test_training_that_changes_no_weight_fails_and_leaves_no_folder(tiny_data, tmp_path):
    # A rate so small that no float32 weight moves: the run learned nothing and must not pass.
    out = tmp_path / "run"
    result = cli("train", "--data", tiny_data, "--out", out, "--quiet", *FAST, "--set", "train.learning_rate=1e-45",
                 "--set", "train.optimizer=sgd")
    assert result.exit_code == 1, result.output
    assert error_line(result).startswith("Error: training changed no weight in 1 epochs (")
    assert error_line(result).endswith("check train.learning_rate and train.batch_size "
                                       "against the 34 training photos\n")
    assert not out.exists()
    again = cli("train", "--data", tiny_data, "--out", out, "--quiet", *FAST)
    assert again.exit_code == 0, again.output


# --- starts that fail late ---------------------------------------------------------------------


@pytest.mark.parametrize("override, line", [
    ("model.name=nope", "model.name must be one of article, cnn, resnet, transfer, xception; got 'nope'"),
    ("model.activation=nope", "model.activation must be a Keras activation such as relu, gelu, swish; got 'nope'"),
    ("model.kernel_size=40", None),
])
def test_model_settings_are_checked_before_any_photo_or_folder(tiny_data, tmp_path, override, line):
    out, cache = tmp_path / "run", tmp_path / "cache"
    result = cli("train", "--data", tiny_data, "--out", out, *FAST, "--set", f"data.cache_dir={cache}",
                 "--set", override)
    if line is None:
        assert result.exit_code == 1 and error_line(result).startswith(
            "Error: model settings do not fit data.image_size [16, 16]: "), result.output
    else:
        one_error_line(result, line)
    assert not out.exists() and not cache.exists()


def test_missing_transfer_weights_are_found_before_preparing(tiny_data, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    result = cli("train", "--data", tiny_data, "--out", out, *FAST, "--set", f"data.cache_dir={cache}",
                 "--set", "model.name=transfer", "--set", "model.backbone=mobilenetv2",
                 "--set", "data.image_size=32", "--set", f"model.weights={tmp_path / 'gone.h5'}")
    one_error_line(result, f"model.weights must be imagenet, none or a weights file; got '{tmp_path / 'gone.h5'}' "
                           "(file not found)")
    assert not out.exists() and not cache.exists()


def test_a_run_that_fails_before_its_first_epoch_leaves_no_folder(tiny_data, tmp_path):
    from catdog.training import train

    def interrupt(message: str) -> None:
        if message.startswith("training on"):
            raise KeyboardInterrupt

    config = load_config(None, ["train.epochs=1", "data.image_size=16", "train.batch_size=8"])
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "run", report=interrupt)
    assert not (tmp_path / "run").exists()
    assert train(config, tiny_data, tmp_path / "run").run_dir == tmp_path / "run"


# --- run folders that do not fit their model ------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny trained run, copied by the tests that damage it."""
    root = tmp_path_factory.mktemp("trained")
    write_images(root / "photos" / "cats", 16, seed=1)
    write_images(root / "photos" / "dogs", 16, seed=2, bright=True)
    result = cli("train", "--data", root / "photos", "--out", root / "run", "--quiet", *FAST,
                 "--set", f"data.cache_dir={root / 'cache'}")
    assert result.exit_code == 0, result.output
    return root / "run"


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def photo(tmp_path) -> Path:
    return write_images(tmp_path / "new", 1)[0]


@pytest.mark.parametrize("names, line", [
    (["cats"], "{run}/classes.json must be a list of at least two distinct class names; restore it or retrain"),
    (["cats", "dogs", "birds"], "{run}/classes.json names 3 classes but the model has 2 outputs; restore the "
                                "run's own classes.json or retrain"),
    ("not json", "{run}/classes.json is damaged (not a JSON list of class names); restore it or retrain"),
])
def test_classes_json_that_does_not_fit_the_model(run_copy, tmp_path, names, line):
    path = run_copy / "classes.json"
    path.write_text(names if isinstance(names, str) else json.dumps(names))
    one_error_line(cli("predict", "--run", run_copy, photo(tmp_path)), line.format(run=run_copy))


@pytest.mark.parametrize("command", ["predict", "evaluate", "summary", "show"])
def test_truncated_model_file_is_one_line_naming_it(run_copy, tmp_path, command):
    model = run_copy / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    args = {"predict": ["predict", "--run", run_copy, photo(tmp_path)], "evaluate": ["evaluate", "--run", run_copy],
            "summary": ["summary", "--run", run_copy], "show": ["show", "--run", run_copy, photo(tmp_path)]}[command]
    one_error_line(cli(*args), f"{model} is damaged or truncated (not a complete .keras archive); retrain, or copy "
                               "the run folder again")


def test_a_model_with_code_in_it_is_refused_in_one_line(run_copy, tmp_path):
    import keras

    inp = keras.Input((16, 16, 3))
    out = keras.layers.Dense(2, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 1.0)(inp)))
    keras.Model(inp, out).save(run_copy / "model.keras")
    one_error_line(cli("predict", "--run", run_copy, photo(tmp_path)),
                   f"{run_copy / 'model.keras'} holds a layer that runs arbitrary code (a Lambda), which Keras's safe "
                   "mode refuses to load; only load model files you trust")


def test_run_without_config_is_one_line(run_copy, tmp_path):
    (run_copy / "config.yaml").unlink()
    one_error_line(cli("predict", "--run", run_copy, photo(tmp_path)),
                   f"{run_copy} has no config.yaml; restore it from a copy of the run or retrain")


# --- predicting on folders ------------------------------------------------------------------------


def test_predict_lists_fifos_devices_and_broken_links_and_never_blocks(trained, tmp_path):
    folder = tmp_path / "new"
    write_images(folder, 1)
    os.mkfifo(folder / "pipe.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    result = cli("predict", "--run", trained, folder)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{folder / 'img_000.jpg'}: ")
    assert result.stderr.splitlines() == [
        f"{folder / 'gone.jpg'}: error: broken symbolic link (its target is missing)",
        f"{folder / 'pipe.jpg'}: error: not a regular file but a FIFO (named pipe)",
        f"{folder / 'zero.jpg'}: error: not a regular file but a device",
    ]


def test_prepare_lists_fifos_and_broken_links_in_class_folders(tiny_data, tmp_path):
    os.mkfifo(tiny_data / "cats" / "pipe.jpg")
    (tiny_data / "dogs" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    result = cli("prepare", "--data", tiny_data, "--set", "data.image_size=16")
    assert result.exit_code == 0, result.output
    assert "skipped 2 files" in result.stdout
    assert "  cats/pipe.jpg: not a regular file\n" in result.stdout
    assert "  dogs/gone.jpg: not a regular file\n" in result.stdout


# --- names that are not UTF-8, or hold a newline -------------------------------------------------


def test_names_not_utf8_or_with_a_newline_are_skipped_on_one_line_each(tiny_data):
    cats = os.fsencode(tiny_data / "cats")
    for name in (b"bad\xff.jpg", b"two\nlines.jpg"):
        with open(cats + b"/" + name, "wb") as f:
            f.write(b"<html>not a photo</html>")
    result = cli("prepare", "--data", tiny_data, "--set", "data.image_size=16")
    assert result.exit_code == 0, result.output
    assert "  cats/bad\\xff.jpg: not an image (unrecognised format)\n" in result.stdout
    assert "  cats/two\\nlines.jpg: not an image (unrecognised format)\n" in result.stdout
    listed = Path(result.stdout.splitlines()[-1].removeprefix("cache: ")) / "skipped.txt"
    assert listed.read_text(encoding="utf-8").splitlines() == [
        "cats/bad\\xff.jpg: not an image (unrecognised format)",
        "cats/two\\nlines.jpg: not an image (unrecognised format)"]
    again = cli("prepare", "--data", tiny_data, "--set", "data.image_size=16")
    assert again.exit_code == 0 and "0 decoded now" in again.stdout


def test_class_folder_not_utf8_trains_and_draws(tmp_path):
    root = tmp_path / "photos"
    write_images(Path(os.fsdecode(os.fsencode(root) + b"/c\xffts")), 12, seed=1)
    write_images(root / "dogs", 12, seed=2, bright=True)
    out = tmp_path / "run"
    assert cli("train", "--data", root, "--out", out, "--quiet", *FAST).exit_code == 0
    result = cli("evaluate", "--run", out, "--data", root)
    assert result.exit_code == 0, result.output
    assert "c\\xffts" in result.stdout
    assert (out / "evaluation").is_dir() and list((out / "evaluation").rglob("confusion_matrix.png"))


# --- what the decoder sees ---------------------------------------------------------------------------


def test_overwritten_middle_of_synthetic_jpegs_is_refused(tmp_path):
    """200 random bytes over the middle of each of 20 noisy synthetic JPEGs: all refused (on real
    photos about nine in ten are; docs/reliability.md measures it with scripts/measure_decoder.py)."""
    from catdog.errors import ImageError
    from catdog.images import load_image

    rng = np.random.default_rng(0)
    refused = 0
    for i in range(20):
        y, x = np.mgrid[0:96, 128:256]
        pixels = np.stack([(x * (i + 1)) % 256, (y * 2 + i * 7) % 256, ((x + y) * 3) % 256], -1)
        pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        path = tmp_path / f"p{i}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        load_image(path, (32, 32))  # whole, it decodes
        data = path.read_bytes()
        start = len(data) // 2 - 100
        path.write_bytes(data[:start] + rng.integers(0, 256, 200, dtype=np.uint8).tobytes() + data[start + 200:])
        try:
            load_image(path, (32, 32))
        except ImageError:
            refused += 1
    assert refused == 20


# --- the cache that forgets ------------------------------------------------------------------------


def test_cache_stays_incremental_when_the_last_new_file_fails(tiny_data):
    (tiny_data / "dogs" / "zzz_last.jpg").write_bytes(b"\xff\xd8\xff garbage")
    first = cli("prepare", "--data", tiny_data, "--set", "data.image_size=16")
    assert first.exit_code == 0 and "49 decoded now, 0 from cache" in first.stdout, first.stdout
    second = cli("prepare", "--data", tiny_data, "--set", "data.image_size=16")
    assert "0 decoded now, 49 from cache" in second.stdout, second.stdout


# --- resume ----------------------------------------------------------------------------------------


class Interrupt:
    """A Keras callback that interrupts training after `epochs` epochs, as Ctrl-C would."""

    def __new__(cls, epochs: int):
        import keras

        class _Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == epochs:
                    raise KeyboardInterrupt

        return _Interrupt()


RESUMED = ["train.epochs=3", "data.image_size=16", "train.batch_size=8"]


@pytest.fixture(params=[[], ["model.flip=true", "model.dropout=0.3", "train.micro_batch=4", "train.cutmix=0.5"]],
                ids=["plain", "random-layers"])
def interrupted(tiny_data, tmp_path, request) -> Path:
    from catdog.training import train

    config = load_config(None, RESUMED + request.param)
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "run", callbacks=[Interrupt(1)])
    return tmp_path / "run"


def test_resumed_run_ends_as_the_uninterrupted_one(tiny_data, tmp_path, interrupted):
    from catdog.runs import load_run, read_run_config
    from catdog.training import resume, train

    config = read_run_config(interrupted)  # the interrupted run's own
    whole = train(config, tiny_data, tmp_path / "whole")
    resumed = resume(interrupted)
    assert resumed.history.keys() == whole.history.keys()
    for key, values in whole.history.items():
        assert resumed.history[key] == pytest.approx(values, rel=1e-5), key
    a, b = load_run(whole.run_dir).model.get_weights(), load_run(resumed.run_dir).model.get_weights()
    assert all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b, strict=True))


# Slow (10 s: two plateau runs to compare): resuming a run that ends as the uninterrupted one
# (test_resumed_run_ends_as_the_uninterrupted_one) is in the default suite.
@pytest.mark.slow
def test_a_resumed_plateau_schedule_cuts_the_rate_when_the_uninterrupted_run_does(tiny_data, tmp_path):
    """Keras's ReduceLROnPlateau counts afresh in every fit call; catdog's picks up the run's count."""
    from catdog.training import resume, train

    config = load_config(None, [*RESUMED, "train.epochs=5", "train.schedule=plateau", "train.monitor=val_accuracy",
                                "train.learning_rate=0.01"])
    whole = train(config, tiny_data, tmp_path / "whole")
    rates = whole.history["learning_rate"]
    assert rates[-1] < rates[0], f"the rate was never cut, so this test shows nothing: {whole.history}"
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "run", callbacks=[Interrupt(2)])
    resumed = resume(tmp_path / "run")
    for key, values in whole.history.items():
        assert resumed.history[key] == pytest.approx(values, rel=1e-5), key


def test_a_run_killed_as_it_stops_early_is_saved_not_trained_on_when_resumed(tiny_data, tmp_path):
    import keras

    from catdog.training import resume, train

    class KillAtTheStop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if self.model.stop_training:
                raise KeyboardInterrupt

    config = load_config(None, [*RESUMED, "train.epochs=8", "train.early_stopping=1", "train.monitor=val_accuracy",
                                "train.learning_rate=0.01"])
    whole = train(config, tiny_data, tmp_path / "whole")
    assert whole.epochs < 8, f"training never stopped early, so this test shows nothing: {whole.history}"
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_data, tmp_path / "run", callbacks=[KillAtTheStop()])
    resumed = resume(tmp_path / "run")
    assert resumed.epochs == whole.epochs
    for key, values in whole.history.items():
        assert resumed.history[key] == pytest.approx(values, rel=1e-5), key


@pytest.mark.parametrize("damage, line", [
    ("truncate checkpoint", "--resume {run}: {run}/checkpoint/epoch-0001.weights.h5 is damaged or truncated; "
                            "start again with catdog train"),
    ("remove best", "--resume {run}: {run}/checkpoint/best-0001.weights.h5 is missing; start again with catdog train"),
    ("remove config", "{run} has no config.yaml; restore it from a copy of the run or retrain"),
    ("damage state", None),
])
def test_resume_with_damaged_files_is_one_line_before_training(interrupted, damage, line):
    ckpt = interrupted / "checkpoint"
    if damage == "truncate checkpoint":
        path = ckpt / "epoch-0001.weights.h5"
        path.write_bytes(path.read_bytes()[:2000])
    elif damage == "remove best":
        (ckpt / "best-0001.weights.h5").unlink()
    elif damage == "remove config":
        (interrupted / "config.yaml").unlink()
    else:
        (ckpt / "state.json").write_text("{not json")
    result = cli("train", "--resume", interrupted, "--quiet")
    if line is None:
        assert result.exit_code == 1 and error_line(result).startswith(
            f"Error: --resume {interrupted}: {ckpt / 'state.json'} is damaged (")
    else:
        one_error_line(result, line.format(run=interrupted))
    assert "training on" not in result.stdout


# --- kills -------------------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    """Every process whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_prepare_leaves_no_process_running(tmp_path, sig):
    for name in ("cats", "dogs"):
        write_images(tmp_path / "photos" / name, 300, size=96)
    env = dict(os.environ, CATDOG_CACHE=str(tmp_path / "cache"))
    script = "import sys; from catdog.cli import main; sys.argv[0] = 'catdog'; main()"
    proc = subprocess.Popen([sys.executable, "-c", script, "prepare", "--data", str(tmp_path / "photos"),
                             "--set", "data.image_size=64", "--set", "data.workers=2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    kids: set[int] = set()
    while len(kids) < 2 and time.monotonic() < deadline and proc.poll() is None:
        kids |= children(proc.pid)
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("prepare finished before its workers could be seen")
    kids |= children(proc.pid)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [k for k in kids if alive(k)]
    for k in left:  # do not leave them to the next test either
        os.kill(k, signal.SIGKILL)
    assert left == [], "processes left running after the kill"


# --- full disks and read-only folders (a tmpfs, where this machine lets us mount one) ---------------
# As root the tests below mount one themselves; as another user test_full_disk_tests_in_a_user_namespace
# runs them in a user namespace, where the kernel lets anyone mount a tmpfs (unless it is switched
# off); the ones after them fill a simulated disk and need neither.

IN_NAMESPACE = "CATDOG_TEST_IN_USER_NAMESPACE"
SMALL_DISK_TESTS = "full_disk_during_prepare or read_only_disk or run_folder_on_a_full_disk"


def mount_tmpfs(where: Path, options: str) -> str | None:
    """Mount (or with "remount,..." change) a tmpfs at `where`; why not, or None when done. The type
    and source are named even for a remount: inside a user namespace mount(8) needs them."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "needs root (or a user namespace) to mount a small tmpfs"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs at tmp_path/disk, remountable read-only; skipped where mounting is not allowed."""
    where = tmp_path / "disk"
    where.mkdir()
    if (why := mount_tmpfs(where, "size=256k")) is not None:
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    assert mount_tmpfs(where, "remount," + options) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux user namespaces")
def test_full_disk_tests_in_a_user_namespace(tmp_path):
    if os.environ.get(IN_NAMESPACE):
        pytest.skip("already in the user namespace")
    (tmp_path / "probe").mkdir()
    if mount_tmpfs(tmp_path / "probe", "size=64k") is None:
        subprocess.run(["umount", "-l", str(tmp_path / "probe")], check=False)
        pytest.skip("the full-disk tests mount their tmpfs themselves here")
    enter = ["unshare", "--user", "--map-root-user", "--mount"]
    if shutil.which("unshare") is None or subprocess.run([*enter, "true"], capture_output=True).returncode != 0:
        pytest.skip("this kernel (or container) allows no user namespaces")
    done = subprocess.run([*enter, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", SMALL_DISK_TESTS], capture_output=True, text=True, timeout=600,
                          env={**os.environ, IN_NAMESPACE: "1"}, cwd=Path(__file__).parents[1])
    assert done.returncode == 0 and "3 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]


def test_full_disk_during_prepare_is_one_line_and_leaves_no_partial_cache(small_disk, tmp_path):
    for name in ("cats", "dogs"):
        write_images(tmp_path / "photos" / name, 60, size=32)
    args = ["prepare", "--data", tmp_path / "photos", "--set", f"data.cache_dir={small_disk}",
            "--set", "data.workers=2"]
    result = cli(*args, "--set", "data.image_size=48")  # 120 x 6.9 KB: more than 256 KiB
    assert result.exit_code == 1, result.output
    (u8,) = small_disk.rglob("images.u8")
    one_error_line(result, f"cannot write the cache {u8}: No space left on device; free some space or set "
                           "data.cache_dir to another disk (the cache is as it was before)")
    assert u8.stat().st_size == 0 and not list(small_disk.rglob("manifest.json"))
    smaller = cli(*args, "--set", "data.image_size=16")  # 120 x 768 B fits
    assert smaller.exit_code == 0, smaller.output
    assert "120 decoded now" in smaller.stdout


def test_complete_cache_on_a_read_only_disk_is_used(small_disk, tmp_path):
    for name in ("cats", "dogs"):
        write_images(tmp_path / "photos" / name, 10)
    args = ["prepare", "--data", tmp_path / "photos", "--set", f"data.cache_dir={small_disk}", "--set",
            "data.image_size=16"]
    assert cli(*args).exit_code == 0
    remount(small_disk, "ro")
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert "0 decoded now, 20 from cache" in again.stdout
    shutil.copy(tmp_path / "photos" / "cats" / "img_000.jpg", tmp_path / "photos" / "cats" / "new.jpg")
    (cdir,) = {p.parent for p in small_disk.rglob("manifest.json")}
    one_error_line(cli(*args), f"the cache folder {cdir} cannot be written (Read-only file system) and 1 photos "
                               "need decoding; set data.cache_dir to a writable folder")


def test_run_folder_on_a_full_disk_can_be_resumed_or_retrained_once_space_is_free(small_disk, tiny_data):
    remount(small_disk, "size=160k")
    out = small_disk / "run"
    args = ["--quiet", "--set", "train.epochs=3", "--set", "data.image_size=16", "--set", "train.batch_size=8"]
    full = cli("train", "--data", tiny_data, "--out", out, *args)
    assert full.exit_code == 1, full.output
    line = error_line(full)
    assert line.startswith(f"Error: {out}/") and line.endswith(
        ": No space left on device; free some space or point data.cache_dir / --out elsewhere\n"), line
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name or ".partial" in p.name]  # no half files
    assert not (out / "model.keras").exists()
    remount(small_disk, "size=4m")
    if (out / "checkpoint" / "state.json").is_file():
        again = cli("train", "--resume", out, "--quiet")
    else:  # failed in its first epoch: the folder was removed, so --out works again
        assert not out.exists()
        again = cli("train", "--data", tiny_data, "--out", out, *args)
    assert again.exit_code == 0, again.output
    assert (out / "model.keras").is_file() and "best epoch 3/3" in again.stdout


class SmallDisk:
    """os.pwrite as on a disk with `room` bytes free under `folder`: a write past it fails with
    ENOSPC, as the kernel's would. The cache's rows are written with os.pwrite (catdog.cache);
    with data.workers=1 they are written in this process."""

    def __init__(self, folder: Path, room: int) -> None:
        self.folder, self.room, self.used, self.refused = str(folder), room, 0, 0
        self.pwrite = os.pwrite

    def __call__(self, fd: int, data, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(self.folder + os.sep):
            if self.used + len(data) > self.room:
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.used += len(data)
        return self.pwrite(fd, data, offset)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_full_disk_in_a_first_prepare_leaves_an_empty_cache_then_a_rerun_fills_it(tmp_path, monkeypatch):
    for name in ("cats", "dogs"):
        write_images(tmp_path / "photos" / name, 30, size=32)
    cache = tmp_path / "cache"
    args = ["prepare", "--data", tmp_path / "photos", "--set", f"data.cache_dir={cache}", "--set", "data.workers=1",
            "--set", "data.image_size=32"]
    disk = SmallDisk(cache, 20 * 32 * 32 * 3)  # room for 20 of the 60 rows
    monkeypatch.setattr(os, "pwrite", disk)
    result = cli(*args)
    assert disk.used == 20 * 32 * 32 * 3 and disk.refused == 1
    (u8,) = cache.rglob("images.u8")
    one_error_line(result, f"cannot write the cache {u8}: No space left on device; free some space or set "
                           "data.cache_dir to another disk (the cache is as it was before)")
    assert u8.stat().st_size == 0 and not list(cache.rglob("manifest.json"))
    disk.room = 10**9
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert "60 decoded now, 0 from cache" in again.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_full_disk_while_adding_photos_keeps_the_cache_as_it_was(tmp_path, monkeypatch):
    for name in ("cats", "dogs"):
        write_images(tmp_path / "photos" / name, 20, size=32, seed=1)
    cache = tmp_path / "cache"
    args = ["prepare", "--data", tmp_path / "photos", "--set", f"data.cache_dir={cache}", "--set", "data.workers=1",
            "--set", "data.image_size=16"]
    assert cli(*args).exit_code == 0
    (u8,), (manifest,) = cache.rglob("images.u8"), cache.rglob("manifest.json")
    before = (u8.read_bytes(), manifest.read_bytes())
    assert len(before[0]) == 40 * 16 * 16 * 3
    new = write_images(tmp_path / "new", 20, size=32, seed=2)
    for path in new:
        path.rename(tmp_path / "photos" / "dogs" / f"new_{path.name}")
    monkeypatch.setattr(os, "pwrite", disk := SmallDisk(cache, 5 * 16 * 16 * 3))
    one_error_line(cli(*args), f"cannot write the cache {u8}: No space left on device; free some space or set "
                               "data.cache_dir to another disk (the cache is as it was before)")
    assert disk.refused == 1
    assert u8.stat().st_size == len(before[0])  # the 5 rows written meanwhile were cut off
    assert (u8.read_bytes(), manifest.read_bytes()) == before
    disk.room = 10**9
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert "20 decoded now, 40 from cache" in again.stdout


# --- resume after a real kill -9 (slow: two trainings in subprocesses) ------------------------------


@pytest.mark.slow
def test_run_killed_with_sigkill_and_resumed_ends_as_the_uninterrupted_one(tiny_data, tmp_path):
    from catdog.runs import load_run

    env = dict(os.environ, CATDOG_CACHE=str(tmp_path / "cache"))
    script = "import sys; from catdog.cli import main; sys.argv[0] = 'catdog'; main()"
    args = ["--set", "train.epochs=4", "--set", "data.image_size=16", "--set", "train.batch_size=8", "--quiet"]
    run = lambda *a: subprocess.run([sys.executable, "-c", script, *map(str, a)], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=600)
    whole = run("train", "--data", tiny_data, "--out", tmp_path / "whole", *args)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "-c", script, "train", "--data", str(tiny_data), "--out",
                             str(tmp_path / "killed"), *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["epochs_done"] >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training ended before its second epoch was seen: nothing was killed"
    proc.kill()
    proc.wait()
    resumed = run("train", "--resume", tmp_path / "killed", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    h1 = json.loads((tmp_path / "whole" / "history.json").read_text())
    h2 = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert h2.keys() == h1.keys() and all(h2[k] == pytest.approx(h1[k], rel=1e-5) for k in h1)
    a = load_run(tmp_path / "whole").model.get_weights()
    b = load_run(tmp_path / "killed").model.get_weights()
    assert all(np.allclose(x, y, rtol=1e-5, atol=1e-6) for x, y in zip(a, b, strict=True))

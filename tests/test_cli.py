"""The whole path through the command line, on tiny generated images."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from catdog.cli import main
from catdog.config import load_config
from catdog.devices import training_device

FAST = ["--set", "train.epochs=1", "--set", "data.image_size=16", "--set", "train.batch_size=8"]


def invoke(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def test_every_command_has_help_with_an_example():
    for name, command in main.commands.items():
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        assert "Example: catdog " + name in result.output, name
        for sub in getattr(command, "commands", {}):
            result = invoke(name, sub, "--help")
            assert result.exit_code == 0 and f"Example: catdog {name} {sub}" in result.output, (name, sub)


def test_help_names_no_path_only_a_checkout_has():
    for name, command in main.commands.items():
        for sub in [None, *getattr(command, "commands", {})]:
            text = invoke(*[a for a in (name, sub) if a], "--help").output
            assert "configs/" not in text and "../" not in text and "/tmp/" not in text, (name, sub)


def test_config_list_show_and_resolve(tmp_path):
    listed = invoke("config", "list").output.splitlines()
    assert [line.split()[0] for line in listed] == ["article", "large", "small", "transfer"]
    assert listed[0].split(None, 1)[1].startswith('The model and training of "Architecture of Convolutional')
    shown = invoke("config", "show", "large").output
    assert shown.startswith("# ") and "name: resnet" in shown  # the file as written, comments kept
    copy = tmp_path / "my.yaml"
    copy.write_text(shown)
    resolved = invoke("config", "resolve", "-c", copy, "--set", "train.epochs=2").output
    assert "epochs: 2" in resolved and "image_size: [160, 160]" in resolved and "micro_batch: null" in resolved
    missing = invoke("config", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr == ("Error: config file not found: nope (expected a YAML file or a built-in config name: "
                              "article, large, small, transfer)\n")


def test_run_folders_are_named_after_the_config(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text("model: {name: article}\n")
    first = invoke("train", "-c", "tiny.yaml", "--data", tiny_data, "--quiet", *FAST)
    assert first.exit_code == 0, first.output
    (run,) = (tmp_path / "runs").iterdir()
    assert re.fullmatch(r"\d{8}-\d{6}-tiny", run.name)
    # Its config.yaml holds the article's keys only, and its name: `train -c RUN/config.yaml` keeps it.
    recorded = (run / "config.yaml").read_text()
    assert recorded.startswith("name: tiny\n") and "stem_pool" not in recorded and "backbone" not in recorded
    from catdog.runs import run_name

    assert run_name(load_config(run / "config.yaml")) == "tiny"


def test_set_errors_name_set_and_suggest_the_section():
    result = invoke("summary", "-c", "small", "--set", "epochs=1")
    assert result.exit_code == 1
    assert result.stderr == "Error: unknown config key epochs (--set); did you mean train.epochs?\n"
    result = invoke("summary", "-c", "small", "--set", "train.epochs=0")
    assert result.stderr == "Error: train.epochs must be an integer >= 1; got 0 (--set)\n"


def test_split_folders_are_not_taken_for_classes(tiny_data, tmp_path):
    photos = tmp_path / "splits"
    photos.mkdir()
    tiny_data.rename(photos / "train")
    (photos / "validation" / "cats").mkdir(parents=True)
    (photos / "new").mkdir()
    result = invoke("prepare", "--data", photos)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {photos} holds split folders (new, train, validation), not classes: train/ holds "
                             f"the class folders cats, dogs; pass --data {photos / 'train'} (and --set "
                             f"data.validation_dir=... for a validation folder)\n")


def test_a_folder_above_the_dataset_points_at_the_class_folders(tiny_data, tmp_path):
    # `catdog download --to data` makes data/cats_and_dogs_filtered/{train,validation}/...
    top = tmp_path / "data"
    (top / "cats_and_dogs_filtered").mkdir(parents=True)
    tiny_data.rename(top / "cats_and_dogs_filtered" / "train")
    (top / "cats_and_dogs_filtered" / "validation").mkdir()
    result = invoke("prepare", "--data", top)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: only one class found in {top} (cats_and_dogs_filtered); a classifier needs at "
                             f"least two class folders; cats_and_dogs_filtered/ holds split folders: pass e.g. "
                             f"--data {top / 'cats_and_dogs_filtered' / 'train'}\n")


def test_log_file_output_is_plain_lines_with_batches(tiny_data, tmp_path):
    # CliRunner's stdout is not a terminal, as in `catdog train > log.txt`.
    result = invoke("train", "--data", tiny_data, "--out", tmp_path / "run", "--set", "data.image_size=16",
                    "--set", "train.epochs=2", "--set", "train.batch_size=16", "--set", "train.micro_batch=4")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\x1b" not in result.output and "\b" not in result.output
    # 34 training photos in batches of 16: 3 batches (9 micro-batches of 4).
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.match(r"epoch \d/2: 3 batches in \d+\.\d s  accuracy 0\.\d{4}  loss \d\.\d{4}  "
                        r"val_accuracy [01]\.\d{4}  val_loss \d\.\d{4}$", line) for line in epochs), epochs
    quiet = invoke("train", "--data", tiny_data, "--out", tmp_path / "quiet", "--quiet", "--set", "data.image_size=16",
                   "--set", "train.epochs=1")
    assert sum(line.startswith("epoch 1/1: ") for line in quiet.stdout.splitlines()) == 1


def test_commands_without_run_say_which_run_they_used(run_dir, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    latest = run_dir.rename(tmp_path / "runs" / "20250101-000000-article")
    result = invoke("predict", "--json", tiny_data / "cats" / "img_000.jpg")
    assert result.exit_code == 0
    assert result.stderr == f"using the latest run, {latest.relative_to(tmp_path)} (pick another with --run)\n"
    assert json.loads(result.stdout)["label"] in ("cats", "dogs")


@pytest.fixture
def run_dir(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "-c", "article", "--data", tiny_data, "--out", out, "--quiet",
                    *FAST, "--set", "data.test_split=0.25")
    assert result.exit_code == 0, result.output
    assert f"training on {training_device()};" in result.output
    assert re.search(r"best epoch 1/1: val_accuracy [01]\.\d{4}, val_loss \d+\.\d{4}", result.output)
    return out


def test_end_to_end(tiny_data, run_dir, tmp_path):
    prep = invoke("prepare", "-c", "article", "--data", tiny_data, "--set", "data.image_size=16")
    assert prep.exit_code == 0 and "cats: 24" in prep.output and "dogs: 24" in prep.output
    assert "0 decoded now" in prep.output  # train already prepared it

    for name in ("model.keras", "classes.json", "config.yaml", "history.json", "split.json"):
        assert (run_dir / name).is_file(), name
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["test"]) == 12 and not set(split["test"]) & set(split["train"])
    assert json.loads((run_dir / "history.json").read_text())["val_loss"]

    held_out = json.loads(invoke("evaluate", "--run", run_dir, "--json").stdout)
    assert held_out["images"] == 12 and "held-out test split" in held_out["source"]
    assert json.loads((run_dir / "evaluation" / "held-out" / "report.json").read_text())["images"] == 12
    report = invoke("evaluate", "--run", run_dir, "--data", tiny_data, "--json")
    data = json.loads(report.stdout)
    assert data["images"] == 48 and 0 <= data["accuracy"] <= 1 and data["log_loss"] > 0
    assert np.array(data["confusion_matrix"]).sum() == 48
    assert set(data["per_class"]) == {"cats", "dogs"}
    table = invoke("evaluate", "--run", run_dir, "--data", tiny_data).output
    assert "accuracy" in table and "confusion matrix" in table and "precision" in table

    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    pred = invoke("predict", "--run", run_dir, "--json", tiny_data / "cats", bad)
    assert pred.exit_code == 1
    lines = [json.loads(x) for x in pred.stdout.splitlines() if x.startswith("{")]
    good = [x for x in lines if "label" in x]
    assert len(good) == 24
    for line in good:
        assert line["label"] in ("cats", "dogs") and 0 <= line["probability"] <= 1
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-5
    assert any(x.get("path") == str(bad) and "error" in x for x in lines)

    summary = invoke("summary", "--run", run_dir)
    assert "12×12×10" in summary.output and "6×6×10" in summary.output and "total params" in summary.output


def test_predictions_identical_after_reload(tiny_data, run_dir):
    import keras

    from catdog.cache import prepare
    from catdog.folders import discover
    from catdog.prediction import predict

    first = [p.probabilities for p in predict([tiny_data / "dogs"], run_dir)]
    again = [p.probabilities for p in predict([tiny_data / "dogs"], run_dir)]
    assert first == again
    model = keras.saving.load_model(run_dir / "model.keras")
    pixels = prepare(discover(tiny_data), (16, 16)).take(np.arange(24, 48))
    direct = model.predict(pixels, verbose=0)
    assert np.allclose(direct[:, 1], [p["dogs"] for p in first], atol=1e-6)


def test_tta_averages_each_photo_with_its_mirror(tiny_data, run_dir):
    import keras

    from catdog.cache import prepare
    from catdog.folders import discover
    from catdog.prediction import predict, with_mirror_averaged

    model = keras.saving.load_model(run_dir / "model.keras")
    pixels = prepare(discover(tiny_data), (16, 16)).take(np.arange(24, 48))
    expected = (model.predict(pixels, verbose=0) + model.predict(pixels[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(with_mirror_averaged(model).predict(pixels, verbose=0), expected, atol=1e-6)
    # The article model is not mirror-symmetric, so the answers differ from the plain ones.
    assert not np.allclose(expected, model.predict(pixels, verbose=0), atol=1e-6)

    averaged = [p.probabilities["dogs"] for p in predict([tiny_data / "dogs"], run_dir, tta=True)]
    np.testing.assert_allclose(averaged, expected[:, 1], atol=1e-6)
    lines = invoke("predict", "--run", run_dir, "--json", "--tta", tiny_data / "dogs").stdout.splitlines()
    np.testing.assert_allclose([json.loads(x)["probabilities"]["dogs"] for x in lines], expected[:, 1], atol=1e-6)

    result = invoke("evaluate", "--run", run_dir, "--data", tiny_data, "--json", "--tta")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 48
    assert len(list((run_dir / "evaluation").glob("*-tta/report.json"))) == 1  # beside, not over, the plain report


@pytest.mark.parametrize("args, message", [
    (["train", "-c", "nope.yaml"], "config file not found: nope.yaml"),
    (["train", "--set", "train.epochz=1"], "unknown config key train.epochz"),
    (["train", "--data", "no/such/folder"], "data folder not found: no/such/folder"),
    (["train"], "no data folder given: pass --data DIR or set data.dir in the config"),
    (["evaluate", "--run", "no/such/run"], "run folder not found: no/such/run"),
    (["predict", "--run", "no/such/run", "x.jpg"], "run folder not found: no/such/run"),
])
def test_errors_are_one_line_and_exit_1(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_run_without_model_and_only_one_class(tmp_path, tiny_data):
    (tmp_path / "empty_run").mkdir()
    result = CliRunner().invoke(main, ["evaluate", "--run", str(tmp_path / "empty_run")])
    assert result.exit_code == 1 and "holds no trained model (model.keras)" in result.output
    import shutil

    shutil.rmtree(tiny_data / "dogs")
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data)])
    assert result.exit_code == 1 and "only one class found" in result.output


def test_out_folder_is_never_overwritten(tiny_data, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(out), *FAST])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    assert (out / "notes.txt").read_text() == "keep me"


def test_demo_runs_the_whole_path(tmp_path):
    result = invoke("demo", "--workdir", tmp_path, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "6/6" in result.output
    assert (tmp_path / "run" / "model.keras").is_file()
    assert (tmp_path / "run" / "show" / "stripes_000" / "heatmap.png").is_file()


def test_library_warnings_are_one_line(capsys):
    from catdog.cli import warning_line

    warning_line(UserWarning("`input_shape` is undefined or non-square.\nWeights for (224, 224) will be loaded."),
                 UserWarning, "/site-packages/keras/src/applications/mobilenet_v2.py", 123)
    assert capsys.readouterr().err == "warning: `input_shape` is undefined or non-square.\n"


def test_a_command_that_loads_a_model_prints_only_catdogs_lines(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("TF_", "CATDOG_BACKEND"))}
    done = subprocess.run([sys.executable, "-c", "from catdog.cli import main; main()", "summary", "-c", "small"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "stem_conv" in done.stdout
    assert done.stderr == ""


def test_sigterm_wrapped_by_native_code_still_ends_in_its_line_and_143(capsys):
    # Raised while TensorFlow's C++ calls back into Python, the SIGTERM's exception comes out as a
    # SystemError or TypeError (seen in an export's tracing); it must still end the command cleanly.
    import os
    import signal
    import time

    import click

    from catdog.cli import Terminated, sigterm_unwinds

    with pytest.raises(click.exceptions.Exit) as stopped, sigterm_unwinds("export"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            raise TypeError("<built-in function __import__> returned a result with an exception set") from None
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "export stopped by SIGTERM; what it had half written was removed\n"


def test_sigterm_swallowed_by_a_block_that_then_finishes_still_ends_in_143(capsys):
    # A library's bare `except:` can swallow the SIGTERM's exception; the block then finishes its
    # work, and the command must neither exit 0 nor claim it removed anything.
    import os
    import signal
    import time

    import click

    from catdog.cli import sigterm_unwinds

    with pytest.raises(click.exceptions.Exit) as stopped, sigterm_unwinds("export"):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except:  # noqa: E722 - what tf2onnx does
            pass
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "export had finished when SIGTERM arrived; what it wrote is complete\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_reader_that_stops_early_gets_no_error_line():
    """`catdog ... | head`: the pipe closes before catdog has written everything; no `Error:` line."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "from catdog.cli import main; main()", "config", "resolve", "-c",
                              "large"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child writes: its first write meets a closed pipe
    stderr = child.stderr.read()
    assert child.wait(timeout=60) == 1
    assert stderr == b""


def test_sigterm_swallowed_by_a_garbage_collector_callback_still_stops_the_command(tmp_path):
    # JAX's gc callback once received the SIGTERM: Python ignores an exception raised there ("Exception
    # ignored in: <function _xla_gc_callback>") and the export went on to finish with exit 0.
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import gc, os, signal, sys, time
        import click
        from catdog.cli import sigterm_unwinds

        def callback(phase, info):
            if phase == "start" and not fired:
                fired.append(1)
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(1000))  # Python code: the handler runs here, inside the callback

        fired = []
        gc.callbacks.append(callback)
        try:
            with sigterm_unwinds("export"):
                gc.collect()
                for _ in range(200):
                    time.sleep(0.01)
                print("finished")
        except click.exceptions.Exit as stop:
            sys.exit(stop.exit_code)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143, (done.stdout, done.stderr)
    assert "finished" not in done.stdout
    assert done.stderr == "export stopped by SIGTERM; what it had half written was removed\n"

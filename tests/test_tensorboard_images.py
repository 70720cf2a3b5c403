"""The pictures catdog draws, read back from the run's TensorBoard event files: the learning curves
as training ends, each evaluation's confusion matrix and top mistakes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import pytest
from click.testing import CliRunner
from picture_reading import tensorboard_images
from PIL import Image

from catdog.cli import main

pytest.importorskip("tensorboard")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_training_writes_the_learning_curves_at_its_last_epoch(trained):
    run, _ = trained  # two epochs
    assert tensorboard_images(run / "tensorboard" / "train") == {"learning_curves": [(1, (1100, 420))]}
    assert tensorboard_images(run / "tensorboard" / "validation") == {}


def test_evaluate_writes_its_pictures_once_per_photo_folder(trained, tmp_path):
    source, photos = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    shutil.rmtree(run / "tensorboard" / "evaluation", ignore_errors=True)  # another test's evaluation
    logs = run / "tensorboard" / "evaluation"
    first = invoke("evaluate", "--run", run)
    assert first.exit_code == 0, first.output
    assert f"TensorBoard images: {logs} (tensorboard --logdir {tmp_path})\n" in first.output
    held_out = {"held-out/confusion_matrix": [(1, (600, 500))], "held-out/top_mistakes": [(1, (
        Image.open(run / "evaluation" / "held-out" / "top_mistakes.png").size))]}
    assert tensorboard_images(logs) == held_out
    # Again on the same photos: replaced, not shown twice at one step; another folder: beside them.
    assert invoke("evaluate", "--run", run).exit_code == 0
    other_folder = invoke("evaluate", "--run", run, "--data", photos, "--json")
    assert json.loads(other_folder.stdout)["images"] == 24  # with --json the line goes to stderr
    assert other_folder.stderr == f"TensorBoard images: {logs} (tensorboard --logdir {tmp_path})\n"
    images = tensorboard_images(logs)
    assert {k: v for k, v in images.items() if k.startswith("held-out/")} == held_out
    (other,) = {k.split("/")[0] for k in images} - {"held-out"}
    assert other.startswith("photos-") and images[f"{other}/confusion_matrix"] == [(1, (600, 500))]
    assert len(images) == 4
    # The training's own logs are left as they were.
    assert tensorboard_images(run / "tensorboard" / "train") == {"learning_curves": [(1, (1100, 420))]}


def test_evaluate_without_tensorboard_logs_writes_none_and_never_fails(trained, tmp_path, monkeypatch):
    from catdog.evaluation import evaluate
    from catdog.runs import load_run

    source, _ = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    shutil.rmtree(run / "tensorboard")
    r = load_run(run)
    off = dataclasses.replace(r, config=r.config.replace(train=dataclasses.replace(r.config.train,
                                                                                   tensorboard=False)))
    report = evaluate(off)
    assert report.tensorboard_line is None and not (run / "tensorboard").exists()
    # The run asked for logs, but tensorboard is not installed (any more): no images, no error.
    on = dataclasses.replace(r, config=r.config.replace(train=dataclasses.replace(r.config.train, tensorboard=True)))
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    report = evaluate(on)
    assert report.tensorboard_line is None and not (run / "tensorboard").exists()
    monkeypatch.delitem(sys.modules, "tensorboard")
    # A file where the folder belongs: the evaluation is complete, and one line says why no images.
    (run / "tensorboard").write_text("not a folder")
    result = invoke("evaluate", "--run", run)
    assert result.exit_code == 0, result.output
    assert result.output.count("TensorBoard images not written (") == 1, result.output
    assert (run / "evaluation" / "held-out" / "report.json").is_file()
    assert (run / "tensorboard").read_text() == "not a folder"

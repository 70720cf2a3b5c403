"""The pictures the commands draw: train's curves, evaluate's matrix and mistakes, show, summary --diagram."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import train_tiny_run
from PIL import Image

from catdog.callbacks import best_epoch
from catdog.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny two-epoch run shared by this file's tests: (run folder, photo folder)."""
    root = tmp_path_factory.mktemp("pictures")
    return train_tiny_run(root, "train.epochs=2", "data.image_size=24", "train.batch_size=8", "data.test_split=0.25")


def test_train_draws_learning_curves(trained):
    run, _ = trained
    assert png_size(run / "learning_curves.png") == (1100, 420)


def test_evaluate_draws_confusion_matrix_and_top_mistakes(trained):
    run, _ = trained
    result = invoke("evaluate", "--run", run)
    assert result.exit_code == 0, result.output
    folder = run / "evaluation" / "held-out"
    assert f"picture: {folder / 'confusion_matrix.png'}" in result.output
    assert f"picture: {folder / 'top_mistakes.png'}" in result.output
    assert png_size(folder / "confusion_matrix.png") == (600, 500)
    assert png_size(folder / "top_mistakes.png")[0] > 0


def test_show_writes_every_picture_and_the_prediction(trained):
    run, photos = trained
    photo = photos / "dogs" / "img_000.jpg"
    result = invoke("show", "--run", run, photo)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{photo}: ")
    folder = run / "show" / "img_000"
    names = ["input.png", "filters.png", "activations-conv.png", "activations-pool.png", "gradcam.png"]
    for name in names:
        assert f"wrote {folder / name}" in result.output
        assert png_size(folder / name)[0] > 0
    assert png_size(folder / "input.png") == (500, 540)
    # Again into our own run folder: overwriting is fine.
    assert invoke("show", "--run", run, photo).exit_code == 0


def test_show_never_overwrites_the_user_s_files(trained, tmp_path):
    run, photos = trained
    (tmp_path / "gradcam.png").write_text("mine")
    result = invoke("show", "--run", run, "--out", tmp_path, photos / "cats" / "img_001.jpg")
    assert result.exit_code == 1
    assert f"--out {tmp_path} already holds gradcam.png; pick another folder" in result.output
    assert (tmp_path / "gradcam.png").read_text() == "mine"


def test_show_reports_an_unreadable_photo(trained, tmp_path):
    run, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = invoke("show", "--run", run, bad)
    assert result.exit_code == 1 and "Error:" in result.output


def test_summary_diagram(tmp_path):
    path = tmp_path / "model.png"
    result = invoke("summary", "--set", "data.image_size=32", "--diagram", path)
    assert result.exit_code == 0, result.output
    assert f"diagram: {path}" in result.output
    width, height = png_size(path)
    assert width == 700 and height > 400
    again = invoke("summary", "--set", "data.image_size=32", "--diagram", path)
    assert again.exit_code == 1 and "already exists; pick another path" in again.output


def test_summary_diagram_of_a_resnet_draws_its_projection_as_a_branch(tmp_path):
    path = tmp_path / "resnet.png"
    result = invoke("summary", "--set", "model.name=resnet", "--set", "data.image_size=32",
                    "--set", "model.blocks=[{filters: 8}, {filters: 16}]", "--diagram", path)
    assert result.exit_code == 0, result.output
    # One column for the main path, one for block2's projection; 23 levels (25 layers, 2 beside).
    assert png_size(path) == (1170, round(100 * (0.9 + 0.85 * 23 + 0.2)))


def test_best_epoch_follows_the_monitor():
    history = {"val_loss": [0.7, 0.5, 0.6], "val_accuracy": [0.5, 0.6, 0.8]}
    assert best_epoch(history) == 2
    assert best_epoch(history, "val_accuracy") == 3
    assert best_epoch({"loss": [1.0]}) is None
    assert best_epoch(history, None) is None  # keep_best off: no best; the curves mark the last epoch


def green_and_blue_columns(path: Path) -> tuple[set[int], int]:
    """In the left (loss) panel: the x of the kept-epoch line's pixels (tab:green) and the
    rightmost x of the training curve (tab:blue)."""
    import numpy as np

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))[:, :550].astype(int)
    green = np.flatnonzero((np.abs(rgb - (44, 160, 44)).sum(axis=-1) < 30).any(axis=0))
    blue = np.flatnonzero((np.abs(rgb - (31, 119, 180)).sum(axis=-1) < 30).any(axis=0))
    return set(green.tolist()), int(blue.max())


@pytest.mark.parametrize("monitor, kept", [("val_loss", 2), (None, 3)])
def test_learning_curves_mark_the_kept_epoch_with_and_without_keep_best(tmp_path, monitor, kept):
    from catdog.callbacks import learning_curves_callback

    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    curves = learning_curves_callback(tmp_path, lambda: history, monitor)
    for epoch, (loss, val_loss) in enumerate(((0.9, 0.8), (0.7, 0.6), (0.6, 0.7))):
        history["loss"].append(loss)
        history["val_loss"].append(val_loss)
        curves.on_epoch_end(epoch, {"loss": loss, "val_loss": val_loss})
    green, last_epoch_x = green_and_blue_columns(tmp_path / "learning_curves.png")
    assert green, "no kept-epoch line"
    # Epochs 1..3 are evenly spaced: the line sits at the last epoch's x, or one step left of it.
    at_last = any(abs(x - last_epoch_x) <= 6 for x in green)
    assert at_last == (kept == 3)

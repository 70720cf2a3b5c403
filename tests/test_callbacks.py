"""Training's callbacks: the learning curves and the epoch they mark as kept."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import png_size
from picture_reading import tensorboard_images
from PIL import Image

from catdog.callbacks import best_epoch, ctrl_c_between_batches


def test_train_draws_learning_curves(trained):
    run, _ = trained
    assert png_size(run / "learning_curves.png") == (1100, 420)


def test_best_epoch_follows_the_monitor():
    history = {"val_loss": [0.7, 0.5, 0.6], "val_accuracy": [0.5, 0.6, 0.8]}
    assert best_epoch(history) == 2
    assert best_epoch(history, "val_accuracy") == 3
    assert best_epoch({"loss": [1.0]}) is None
    assert best_epoch(history, None) is None  # keep_best off: no best; the curves mark the last epoch


def press_ctrl_c() -> None:
    """SIGINT to this process, and a moment of Python in which a handler that raises would raise."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)


def test_ctrl_c_between_batches_holds_a_press_for_its_callback_and_takes_a_second_at_once():
    before = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt), ctrl_c_between_batches() as ctrl_c:
        press_ctrl_c()
        steps.append("held")
        ctrl_c.on_train_batch_begin(0)  # Keras's no-op: not a place that raises
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.on_train_batch_end(0)
        ctrl_c.on_test_batch_end(0)  # raised once
        press_ctrl_c()
        steps.append("held again")
        with pytest.raises(KeyboardInterrupt):
            press_ctrl_c()  # the second press, at once
        steps.append("raised at once")
        # The press the callback never saw is raised as the block ends.
    assert steps == ["held", "held again", "raised at once"]
    assert signal.getsignal(signal.SIGINT) is before
    for place in ("on_train_begin", "on_epoch_begin", "on_test_batch_end"):
        with pytest.raises(KeyboardInterrupt), ctrl_c_between_batches() as ctrl_c:
            press_ctrl_c()
            steps.append(place)
            getattr(ctrl_c, place)() if place == "on_train_begin" else getattr(ctrl_c, place)(0)
            pytest.fail(f"{place} did not raise")
    assert steps[3:] == ["on_train_begin", "on_epoch_begin", "on_test_batch_end"]
    with ctrl_c_between_batches() as ctrl_c:  # no press: nothing raised
        ctrl_c.on_train_batch_end(0)
    assert signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a job a shell started with &: still ignored
    try:
        with ctrl_c_between_batches() as ctrl_c:
            press_ctrl_c()
            ctrl_c.on_train_batch_end(0)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


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


# --- TensorBoard -----------------------------------------------------------------------------------


def tensorboard_scalars(run_dir: Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """{(train or validation, tag): [(step, value), ...]} of every summary in a run's event files but
    the pictures (test_tensorboard_images reads those), in the order written."""
    import tensorflow as tf

    found: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for events in sorted((run_dir / "tensorboard").glob("*/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    continue
                array = tf.make_ndarray(value.tensor)
                number = float(array) if array.dtype.kind == "f" else float("nan")  # nan: not a scalar
                found.setdefault((events.parent.name, value.tag), []).append((event.step, number))
    return found


def test_tensorboard_logs_each_epoch_once_across_a_resume(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import keras

    from catdog import training
    from catdog.config import load_config

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # TensorBoard watching a run sees each epoch as it ends (and a killed run keeps it).
            written = tensorboard_scalars(tmp_path / "run").get(("train", "epoch_loss"), [])
            assert [step for step, _ in written] == list(range(epoch + 1)), written

    def checkpointer(*args, **kwargs):
        # Ctrl-C as the second epoch ends, before its checkpoint: the resume trains it again, so
        # it must not be in the logs yet.
        keeper = real_checkpointer(*args, **kwargs)
        save = keeper.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt
            save(epoch, logs)

        keeper.on_epoch_end = on_epoch_end
        return keeper

    real_checkpointer = training.checkpointer
    config = load_config(None, ["train.epochs=3", "data.image_size=16", "train.batch_size=8",
                                "train.schedule=cosine"])
    monkeypatch.setattr(training, "checkpointer", checkpointer)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tiny_data, tmp_path / "run", callbacks=[Watch()])
    monkeypatch.setattr(training, "checkpointer", real_checkpointer)
    result = training.resume(tmp_path / "run")
    scalars = tensorboard_scalars(tmp_path / "run")
    assert {("train", "epoch_loss"), ("train", "epoch_accuracy"), ("train", "epoch_learning_rate"),
            ("validation", "epoch_loss"), ("validation", "epoch_accuracy")} <= scalars.keys(), scalars.keys()
    for (part, tag), written in scalars.items():
        assert [step for step, _ in written] == [0, 1, 2], (part, tag, written)
        key = tag.removeprefix("epoch_")
        if key == "learning_rate":
            continue  # not in the history unless the plateau schedule puts it there
        values = result.history["val_" + key if part == "validation" else key]
        assert [value for _, value in written] == pytest.approx(values, rel=1e-5), (part, tag)
    rates = [value for _, value in scalars[("train", "epoch_learning_rate")]]
    assert rates[0] > rates[-1], f"the cosine schedule's rate, epoch by epoch: {rates}"
    # The learning curves once, at the last epoch: not by the interrupted part, not twice by the resume.
    assert tensorboard_images(tmp_path / "run" / "tensorboard" / "train") == {"learning_curves": [(2, (1100, 420))]}


def test_training_without_the_tensorboard_package_says_so_once(tiny_data, tmp_path, monkeypatch):
    from catdog.callbacks import TENSORBOARD_MISSING
    from catdog.config import load_config
    from catdog.training import train

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: find_spec says None
    said: list[str] = []
    settings = ["train.epochs=2", "data.image_size=16", "train.batch_size=8"]
    # By default a plain install (no tensorboard) trains without logs and without a word about them.
    train(load_config(None, settings), tiny_data, tmp_path / "default", report=said.append)
    assert not any("tensorboard" in line.lower() for line in said), said
    assert not (tmp_path / "default" / "tensorboard").exists()
    train(load_config(None, [*settings, "train.tensorboard=true"]), tiny_data, tmp_path / "missing",
          report=said.append)
    assert said.count(TENSORBOARD_MISSING) == 1, said
    assert sum("tensorboard" in line.lower() for line in said) == 1, said
    assert not (tmp_path / "missing" / "tensorboard").exists()
    said.clear()
    train(load_config(None, [*settings, "train.tensorboard=false"]), tiny_data, tmp_path / "off", report=said.append)
    assert not any("tensorboard" in line.lower() for line in said), said
    assert not (tmp_path / "off" / "tensorboard").exists()

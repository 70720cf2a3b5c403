"""train.ema: the optimizer's moving average of the weights is what a run validates, keeps,
saves and resumes, on tiny images."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import catdog.layers  # noqa: F401  (registers catdog's layers for load_model)
from catdog.batches import batches
from catdog.cli import main
from catdog.config import load_config
from catdog.optimizers import make_optimizer
from catdog.runs import read_run_config
from catdog.training import load_data, resume, train

# 48 photos, 30% validation: 33 training photos, 5 updates of 8 an epoch.
FAST = ["data.image_size=16", "train.batch_size=8", "train.micro_batch=8"]


def cfg(*overrides: str):
    return load_config(None, [*FAST, *overrides])


class Crash(Exception):
    pass


class Trajectory(keras.callbacks.Callback):
    """Records the trained weights after every update; optionally stops training after `stop_after`
    epochs, or crashes in the middle of epoch `crash_in` (0-based), as a killed process would."""

    def __init__(self, stop_after: int | None = None, crash_in: int | None = None):
        super().__init__()
        self.stop_after, self.crash_in, self.steps = stop_after, crash_in, []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.crash_in and batch == 1:
            raise Crash()
        self.steps.append([np.array(w) for w in self.model.trainable_weights])

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            self.model.stop_training = True


def saved_weights(run: Path) -> list[np.ndarray]:
    return [np.array(w) for w in keras.models.load_model(run / "model.keras").trainable_weights]


def manual_ema(steps: list[list[np.ndarray]], momentum: float) -> list[np.ndarray]:
    """Keras's average: the first update's weights, then momentum * average + (1 - momentum) * weights."""
    average = [w.astype(np.float64) for w in steps[0]]
    for weights in steps[1:]:
        average = [momentum * a + (1 - momentum) * w for a, w in zip(average, weights, strict=True)]
    return average


def evaluate_on_validation(run: Path, data: Path) -> tuple[float, float]:
    """(loss, accuracy) of the saved model on the run's validation photos, as fit measured them."""
    config = read_run_config(run)
    sp = load_data(config, data)
    model = keras.models.load_model(run / "model.keras")
    val = batches(sp.val.images, sp.val.rows[sp.val_idx], sp.val.row_targets(False), config.train.micro_batch)
    loss, accuracy = model.evaluate(val, verbose=0)
    return float(loss), float(accuracy)


def test_the_optimizer_averages_with_the_momentum_per_update():
    opt = make_optimizer(cfg("train.ema=0.99").train, 0.01)
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.99)
    # 4 micro-batches an update: Keras moves the average at each, so 4 of them make 0.99.
    opt = make_optimizer(cfg("train.ema=0.99").train, 0.01, accumulate=4)
    assert opt.use_ema and opt.ema_momentum ** 4 == pytest.approx(0.99)
    assert not make_optimizer(cfg().train, 0.01).use_ema


@pytest.mark.parametrize("stop_after", [None, 1], ids=["all-epochs", "stopped-early"])
def test_the_saved_model_holds_the_average_of_the_trained_weights(tiny_data, tmp_path, stop_after):
    # A stop before fit's last epoch must keep the average too (Keras's SwapEMAWeights does not).
    plain, averaged = Trajectory(stop_after=stop_after), Trajectory(stop_after=stop_after)
    train(cfg("train.epochs=2", "train.keep_best=false"), tiny_data, tmp_path / "plain", callbacks=[plain])
    train(cfg("train.epochs=2", "train.keep_best=false", "train.ema=0.8"), tiny_data, tmp_path / "ema",
          callbacks=[averaged])
    assert len(averaged.steps) == (5 if stop_after else 10)
    # The average changes nothing of the training itself: the same seed trains the same weights...
    for a, b in zip(averaged.steps[-1], plain.steps[-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # ...but the run keeps their average, not the last step's weights.
    kept, expected = saved_weights(tmp_path / "ema"), manual_ema(averaged.steps, 0.8)
    for k, e in zip(kept, expected, strict=True):
        np.testing.assert_allclose(k, e, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(k, w, atol=1e-4) for k, w in zip(kept, averaged.steps[-1], strict=True))


def test_validation_numbers_and_the_best_weights_are_the_averages(tiny_data, tmp_path):
    result = train(cfg("train.epochs=3", "train.ema=0.8", "train.learning_rate=0.01"), tiny_data, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # model.keras holds the best epoch's averaged weights, and scores on the validation photos
    # what that epoch recorded: the epoch was validated and kept on the same weights.
    loss, accuracy = evaluate_on_validation(tmp_path / "run", tiny_data)
    best = result.best_epoch - 1
    assert loss == pytest.approx(history["val_loss"][best], rel=1e-4)
    assert accuracy == pytest.approx(history["val_accuracy"][best], abs=1e-6)
    assert 0.5 <= accuracy <= 1.0  # dark cats and bright dogs: an average of working weights works


@pytest.mark.parametrize("micro_batch", [
    # Micro-batches of 4: two optimizer calls per update, each moving the average. Whole batches
    # only on JAX, which cannot resume micro-batches exactly (see JAX_TESTS).
    4, pytest.param(8, marks=pytest.mark.skipif(keras.backend.backend() != "jax", reason="covered by 4"))])
def test_a_resumed_run_continues_the_average(tiny_data, tmp_path, micro_batch):
    config = cfg("train.epochs=2", "train.ema=0.8", f"train.micro_batch={micro_batch}", "train.keep_best=false")
    train(config, tiny_data, tmp_path / "whole")
    with pytest.raises(Crash):
        train(config, tiny_data, tmp_path / "run", callbacks=[Trajectory(crash_in=1)])
    resume(tmp_path / "run")
    for a, b in zip(saved_weights(tmp_path / "run"), saved_weights(tmp_path / "whole"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    whole, resumed = (json.loads((tmp_path / r / "history.json").read_text()) for r in ("whole", "run"))
    np.testing.assert_allclose(resumed["val_loss"], whole["val_loss"], rtol=1e-4)


@pytest.mark.slow
def test_a_frozen_backbone_then_fine_tuning_keeps_the_average(tiny_data, tmp_path):
    # Two fit calls, two optimizers; MobileNetV2 has batch norm, whose moving statistics are not
    # averaged: the saved model must still score what its last epoch recorded.
    config = load_config(None, ["data.image_size=32", "train.batch_size=16", "train.micro_batch=16", "train.epochs=2",
                                "model.name=transfer", "model.backbone=MobileNetV2", "model.freeze_epochs=1",
                                "model.weights=none", "train.ema=0.8", "train.keep_best=false"])
    trajectory = Trajectory()
    train(config, tiny_data, tmp_path / "run", callbacks=[trajectory])
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    loss, accuracy = evaluate_on_validation(tmp_path / "run", tiny_data)
    assert loss == pytest.approx(history["val_loss"][-1], rel=1e-4)
    assert accuracy == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    # The fine-tuning phase's average starts afresh (its optimizer is new): 3 updates of 16 photos.
    kept, expected = saved_weights(tmp_path / "run"), manual_ema(trajectory.steps[3:], 0.8)
    for k, e in zip(kept, expected, strict=True):
        np.testing.assert_allclose(k, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_ema_out_of_range_is_one_line(tiny_data, tmp_path, value):
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"),
                                       "--set", f"train.ema={value}"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: train.ema must be a number in [0.0, 1.0); got {float(value)} (--set)"]
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# The JAX trainer keeps the weights out of the model's variables during an epoch and finalises
# the average in a `finally`: the swaps must reach it all the same. (Resuming with micro-batches
# does not repeat an uninterrupted run on JAX, EMA or not; so the resume runs whole batches.)
JAX_TESTS = "saved_model or validation or (resumed and 8)"


@pytest.mark.slow
def test_the_same_on_jax(tmp_path):
    if keras.backend.backend() == "jax":
        pytest.skip("this process runs on JAX already")
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (a test extra)")
    root = Path(__file__).parents[1]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-k", JAX_TESTS,
                           "--basetemp", str(tmp_path / "jax")], env=env, cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 passed" in proc.stdout, proc.stdout[-3000:]


def test_training_that_changes_no_weight_still_fails(tiny_data, tmp_path):
    # The average of unchanged weights must be them, to the bit: the guard compares the kept weights.
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--quiet",
                                       *[a for s in [*FAST, "train.epochs=2", "train.ema=0.99", "train.optimizer=sgd",
                                                     "train.learning_rate=1e-45"] for a in ("--set", s)]])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("Error: training changed no weight in 2 epochs (")
    assert not (tmp_path / "run").exists()

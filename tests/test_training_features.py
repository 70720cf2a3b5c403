"""Optimizers, schedules, label smoothing, early stopping, best epoch, checkpoints, resume,
reproducibility and the frozen-then-fine-tune schedule, on tiny images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from catdog.callbacks import early_stopping
from catdog.checkpoints import (
    CHECKPOINT_DIR,
    CHECKPOINT_MARGIN,
    STATE_FILE,
    State,
    best_keeper,
    checkpointer,
    read_state,
    restore_best,
    room_check,
)
from catdog.cli import main
from catdog.config import load_config
from catdog.errors import ConfigError, RunError
from catdog.optimizers import FINE_TUNE_FACTOR, NO_DECAY, compile_model, learning_rate, make_optimizer, plateau_callback
from catdog.plan import phases
from catdog.training import resume, train

FAST = ["data.image_size=16", "train.batch_size=8"]


def cfg(*overrides: str):
    return load_config(None, [*FAST, *overrides])


def rate_at(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


# --- schedules and optimizers ---------------------------------------------------------------

def test_constant_rate_is_a_number():
    rate = learning_rate(cfg("train.learning_rate=0.02").train, 10, 5)
    assert isinstance(rate, float) and rate == 0.02


def test_cosine_decays_from_the_rate_to_zero():
    s = learning_rate(cfg("train.schedule=cosine", "train.learning_rate=0.01").train, 10, 5)
    assert rate_at(s, 0) == pytest.approx(0.01)
    assert rate_at(s, 25) == pytest.approx(0.005, rel=1e-3)
    assert rate_at(s, 50) == pytest.approx(0.0, abs=1e-7)


def test_cosine_warms_up_linearly_first():
    s = learning_rate(cfg("train.schedule=cosine", "train.warmup_epochs=1", "train.learning_rate=0.01").train, 10, 5)
    assert rate_at(s, 0) == pytest.approx(0.0)
    assert rate_at(s, 5) == pytest.approx(0.005)
    assert rate_at(s, 10) == pytest.approx(0.01)
    assert rate_at(s, 30) == pytest.approx(0.005, rel=1e-3)  # half way through the 40 decay steps
    assert rate_at(s, 50) == pytest.approx(0.0, abs=1e-7)


def test_constant_with_warm_up_holds_after_it():
    s = learning_rate(cfg("train.warmup_epochs=2", "train.learning_rate=0.01").train, 10, 5)
    assert rate_at(s, 10) == pytest.approx(0.005)
    assert rate_at(s, 20) == pytest.approx(0.01) and rate_at(s, 49) == pytest.approx(0.01)


def test_warm_up_as_long_as_training_shrinks_to_leave_one_full_epoch():
    s = learning_rate(cfg("train.schedule=cosine", "train.warmup_epochs=5", "train.learning_rate=0.01").train, 10, 5)
    assert rate_at(s, 20) == pytest.approx(0.005)  # half way through a 4-epoch warm-up
    assert rate_at(s, 40) == pytest.approx(0.01)
    assert rate_at(s, 45) == pytest.approx(0.005, rel=1e-3)


def test_plateau_has_no_warm_up():
    with pytest.raises(ConfigError, match="^train.warmup_epochs works with the constant and cosine schedules; "
                                          "got 1 with schedule plateau$"):
        learning_rate(cfg("train.schedule=plateau", "train.warmup_epochs=1").train, 10, 5)


def test_plateau_halves_the_rate_after_two_flat_epochs():
    t = cfg("train.schedule=plateau", "train.monitor=val_accuracy").train
    assert plateau_callback(cfg().train) is None
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(make_optimizer(t, learning_rate(t, 1, 5)), "mse")
    cb = plateau_callback(t)
    cb.set_model(model)
    cb.on_train_begin()
    for epoch, acc in enumerate([0.6, 0.7, 0.7, 0.69]):
        cb.on_epoch_end(epoch, {"val_accuracy": acc})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0005)


@pytest.mark.parametrize("name,cls", [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW),
                                      ("sgd", keras.optimizers.SGD), ("rmsprop", keras.optimizers.RMSprop)])
def test_optimizer_by_name_with_weight_decay(name, cls):
    opt = make_optimizer(cfg(f"train.optimizer={name}", "train.weight_decay=0.01").train, 0.1)
    assert type(opt) is cls and opt.weight_decay == pytest.approx(0.01)
    # One step with zero gradients: only the decay moves anything, and only the kernel.
    layer = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="ones")
    layer.build((None, 1))
    opt.apply_gradients([(keras.ops.zeros_like(v), v) for v in layer.trainable_variables])
    assert float(layer.kernel.numpy()[0, 0]) == pytest.approx(1 - 0.1 * 0.01)
    assert float(layer.bias.numpy()[0]) == 1.0
    assert "bias" in NO_DECAY


def test_no_weight_decay_by_default():
    assert make_optimizer(cfg().train, 0.1).weight_decay is None


@pytest.mark.parametrize("head,cls", [("softmax", keras.losses.CategoricalCrossentropy),
                                      ("sigmoid", keras.losses.BinaryCrossentropy)])
def test_label_smoothing_reaches_the_loss(head, cls):
    from catdog.models import build_model

    config = cfg(f"model.head={head}", "train.label_smoothing=0.1", "train.schedule=cosine")
    model = build_model(config, 2)
    compile_model(model, config, steps_per_epoch=4)
    assert isinstance(model.loss, cls) and model.loss.label_smoothing == pytest.approx(0.1)
    assert model.optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"


# --- early stopping and best epoch (driven directly, no training) -----------------------------

def drive(tmp_path, monitor: str, values: list[float], keep_best: bool = True, patience: int = 0,
          state: State | None = None):
    """Feed `values` of `monitor` epoch by epoch to the callbacks that keep the best weights, stop
    early and checkpoint, in the order training uses; each epoch's weights are its number."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    state = state or State()
    keeper = checkpointer(tmp_path, monitor, state, lambda: 1.0)
    callbacks = [*([best_keeper(tmp_path, monitor, state)] if keep_best else []),
                 *([early_stopping(monitor, patience, lambda: state.history)] if patience else []), keeper]
    for cb in callbacks:
        cb.set_model(model)
        cb.on_train_begin()
    for epoch, value in enumerate(values, start=state.epochs_done):
        model.set_weights([np.full(w.shape, epoch + 1.0, "float32") for w in model.get_weights()])
        for cb in callbacks:
            cb.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            break
    return model, state


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    model, state = drive(tmp_path, "val_loss", [0.5, 0.4, 0.45, 0.41, 0.3], patience=2)
    assert state.stopped and state.epochs_done == 4 and state.best_epoch == 2


def test_early_stopping_counts_the_epochs_before_a_resume(tmp_path):
    """Keras's EarlyStopping starts counting afresh in every fit call; catdog's continues the run's count."""
    _, state = drive(tmp_path, "val_loss", [0.5, 0.4, 0.45], patience=2)
    assert not state.stopped and state.epochs_done == 3
    _, state = drive(tmp_path, "val_loss", [0.41, 0.3], patience=2, state=state)
    assert state.stopped and state.epochs_done == 4 and state.best_epoch == 2


def test_keep_best_restores_the_best_epochs_weights(tmp_path):
    model, state = drive(tmp_path, "val_accuracy", [0.6, 0.8, 0.7])
    assert state.best_epoch == 2 and state.best_weights == "best-0002.weights.h5"
    restore_best(model, tmp_path, state)
    assert np.all(model.get_weights()[0] == 2.0)


def test_checkpoint_folder_keeps_only_the_last_epoch_and_the_best(tmp_path):
    _, state = drive(tmp_path, "val_loss", [0.5, 0.4, 0.45])
    files = sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir())
    assert files == ["best-0002.weights.h5", "epoch-0003.weights.h5", STATE_FILE]
    saved = json.loads((tmp_path / CHECKPOINT_DIR / STATE_FILE).read_text())
    assert saved["epochs_done"] == 3 and saved["history"] == {"val_loss": [0.5, 0.4, 0.45]}


def test_a_resumed_run_keeps_its_best_until_a_better_epoch(tmp_path):
    _, state = drive(tmp_path, "val_loss", [0.5, 0.4, 0.45])
    _, state = drive(tmp_path, "val_loss", [0.42, 0.3], state=state)
    assert state.best_weights == "best-0005.weights.h5"
    _, state = drive(tmp_path, "val_loss", [0.35], state=state)
    assert state.best_weights == "best-0005.weights.h5" and state.best_epoch == 5


def test_an_epoch_without_room_for_its_checkpoint_fails_before_writing_it(tmp_path):
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(100)])  # 1,100 weights
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)  # and twice that in Adam's moments
    (tmp_path / CHECKPOINT_DIR).mkdir()
    files = 2 * 4 * 3 * 1_100  # the best weights and the checkpoint, float32
    for free, fails in ((files + CHECKPOINT_MARGIN + 1024, False), (files + CHECKPOINT_MARGIN, True), (files, True)):
        check = room_check(tmp_path, free=lambda _path, n=free: n)
        check.set_model(model)
        if fails:
            with pytest.raises(OSError, match="No space left on device") as raised:
                check.on_epoch_end(0)
            assert raised.value.filename == str(tmp_path / CHECKPOINT_DIR)
        else:
            check.on_epoch_end(0)


def test_without_keep_best_no_best_weights_are_written(tmp_path):
    _, state = drive(tmp_path, "val_loss", [0.5, 0.4], keep_best=False)
    assert state.best_weights is None and state.best_epoch == 2


# --- whole runs on tiny images ---------------------------------------------------------------

def weights_of(run_dir: Path) -> list[np.ndarray]:
    import catdog.layers  # noqa: F401

    return keras.models.load_model(run_dir / "model.keras").get_weights()


def test_same_config_and_seed_give_the_same_split_and_weights(tiny_data, tmp_path):
    # Rotation brings in RandomGeometry, cutmix the batch mixing: both must repeat with the seed too.
    config = cfg("train.epochs=1", "model.name=cnn", "model.flip=true", "model.rotation=0.1", "model.dropout=0.2",
                 "train.cutmix=0.5")
    a = train(config, tiny_data, tmp_path / "a")
    b = train(config, tiny_data, tmp_path / "b")
    assert (a.run_dir / "split.json").read_text() == (b.run_dir / "split.json").read_text()
    for wa, wb in zip(weights_of(a.run_dir), weights_of(b.run_dir), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.history == b.history
    c = train(cfg("train.epochs=1", "model.name=cnn", "model.flip=true", "model.dropout=0.2", "seed=7"),
              tiny_data, tmp_path / "c")
    assert json.loads((c.run_dir / "split.json").read_text()) != json.loads((a.run_dir / "split.json").read_text())


def test_jit_compile_on_trains_without_xla_when_a_layer_cannot_compile(tiny_data, tmp_path):
    # TensorFlow's XLA has no kernel for RandomGeometry's warp: it used to fail with a traceback.
    said: list[str] = []
    config = cfg("train.epochs=1", "model.name=cnn", "model.rotation=0.1", "train.jit_compile=on")
    result = train(config, tiny_data, tmp_path / "run", report=said.append)
    assert result.epochs == 1
    if keras.backend.backend() == "tensorflow":
        assert any("train.jit_compile=on, but XLA on the tensorflow backend cannot compile layer 'geometry'" in m
                   for m in said), said


class Crash(Exception):
    pass


def crash_in_epoch(epoch: int, batch: int = 1):
    """A callback that dies in the middle of `epoch` (0-based), as a killed process would."""
    class Crasher(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.epoch = e

        def on_train_batch_end(self, b, logs=None):
            if self.epoch == epoch and b == batch:
                raise Crash()

    return Crasher()


def test_interrupted_run_resumes_to_the_same_epochs_with_history(tiny_data, tmp_path):
    config = cfg("train.epochs=3", "train.schedule=cosine", "train.optimizer=adamw", "train.weight_decay=0.01")
    # The crash rides in as an extra callback, which runs after each epoch is checkpointed.
    with pytest.raises(Crash):
        train(config, tiny_data, tmp_path / "run", callbacks=[crash_in_epoch(1)])
    state = read_state(tmp_path / "run")
    assert state.epochs_done == 1 and not (tmp_path / "run" / "model.keras").exists()
    first = state.history

    result = resume(tmp_path / "run")
    assert result.epochs == 3 and len(result.history["loss"]) == 3
    assert {k: v[:1] for k, v in result.history.items()} == first
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == result.history
    assert not (tmp_path / "run" / CHECKPOINT_DIR).exists()
    # The optimizer continued rather than restarted: 6 images in 8s over 3 epochs.
    import catdog.layers  # noqa: F401

    assert int(keras.models.load_model(tmp_path / "run" / "model.keras").optimizer.iterations) == 3 * 5
    with pytest.raises(RunError, match="this run finished"):
        resume(tmp_path / "run")


class Watch(keras.callbacks.Callback):
    """Records what a fit call starts from and does: the optimizer's step count and the weights at
    its start, the epochs it begins and the batches it runs in each; `stop` ends it before any batch."""

    def __init__(self, stop: bool = False):
        super().__init__()
        self.stop, self.batches = stop, {}

    def on_train_begin(self, logs=None):
        self.iterations = int(self.model.optimizer.iterations)
        self.weights = [np.array(w) for w in self.model.trainable_weights]
        if self.stop:
            raise Crash()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.batches[epoch] = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches[self.epoch] += 1


def test_a_resumed_run_trains_only_the_epochs_it_had_not_finished(tiny_data, tmp_path):
    # Retraining from epoch 0 with the same seed would end with the same history and weights;
    # what tells it apart is the work done: 1 epoch of 3 was finished, 2 remain, 5 batches each.
    with pytest.raises(Crash):
        train(cfg("train.epochs=3"), tiny_data, tmp_path / "run", callbacks=[crash_in_epoch(1)])
    watch = Watch()
    result = resume(tmp_path / "run", callbacks=[watch])
    assert watch.batches == {1: 5, 2: 5}
    assert watch.iterations == 5  # the optimizer starts at the checkpoint's step, not at 0
    assert result.epochs == 3 and len(result.history["loss"]) == 3


def test_a_resumed_run_starts_from_its_checkpoints_weights(tiny_data, tmp_path):
    import h5py

    with pytest.raises(Crash):
        train(cfg("train.epochs=3"), tiny_data, tmp_path / "run", callbacks=[crash_in_epoch(1)])
    # Every weight of the checkpoint set to its own constant: no initialisation or retraining makes those.
    written = []
    with h5py.File(tmp_path / "run" / CHECKPOINT_DIR / read_state(tmp_path / "run").checkpoint, "r+") as f:
        for layer in f["layers"].values():
            for var in layer["vars"].values():
                value = (len(written) + 1) / 64
                var[...] = np.full(var.shape, value, var.dtype)
                written.append((var.shape, value))
    assert len(written) == 4
    watch = Watch(stop=True)
    with pytest.raises(Crash):
        resume(tmp_path / "run", callbacks=[watch])
    started = [(w.shape, float(w.flat[0])) for w in watch.weights if np.all(w == w.flat[0])]
    assert len(started) == len(watch.weights) and sorted(started) == sorted(written)


def test_resume_errors_are_one_line(tmp_path):
    with pytest.raises(RunError, match=f"^--resume {tmp_path / 'nope'}: run folder not found$"):
        read_state(tmp_path / "nope")
    with pytest.raises(RunError, match="no completed epoch to resume from"):
        read_state(tmp_path)


def test_resume_refuses_config_flags(tiny_data):
    result = CliRunner().invoke(main, ["train", "--resume", str(tiny_data), "--set", "train.epochs=2"])
    assert result.exit_code == 2 and "--resume continues a run with its own config" in result.output


# Slow (10 s: a training subprocess killed and resumed); the default suite resumes runs stopped
# in-process at every point (test_faults), and the other kill -9 test is slow as well.
@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_from_the_cli(tiny_data, tmp_path):
    run = tmp_path / "run"
    # Batches of 2 make an epoch long enough to be killed inside it.
    args = [sys.executable, "-c", "from catdog.cli import main; main()", "train", "--data", str(tiny_data),
            "--out", str(run), "--quiet",
            "--set", "data.image_size=16", "--set", "train.batch_size=2", "--set", "train.epochs=4"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    state_file = run / CHECKPOINT_DIR / STATE_FILE
    deadline = time.time() + 300
    while not state_file.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before its first checkpoint was seen: nothing was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = read_state(run)
    assert 1 <= state.epochs_done < 4
    before = {k: v[:state.epochs_done] for k, v in state.history.items()}

    result = CliRunner().invoke(main, ["train", "--resume", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"resuming after epoch {state.epochs_done}/4" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("best epoch ") and str(run) in last, result.output
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 4 and {k: v[:state.epochs_done] for k, v in history.items()} == before


# --- frozen, then fine-tuned ----------------------------------------------------------------

def test_phases():
    # (first epoch, end epoch, backbone frozen, training photo size); train.image_sizes: test_progressive.py
    full = (16, 16)
    assert phases(cfg("train.epochs=5")) == [(0, 5, False, full)]
    transfer = ["model.name=transfer", "model.backbone=MobileNetV2", "train.epochs=5"]
    assert phases(cfg(*transfer)) == [(0, 5, False, full)]
    assert phases(cfg(*transfer, "model.freeze_epochs=2")) == [(0, 2, True, full), (2, 5, False, full)]
    assert phases(cfg(*transfer, "model.freeze_epochs=5")) == [(0, 5, True, full)]
    with pytest.raises(ConfigError, match="^model.freeze_epochs needs model.name transfer"):
        phases(cfg("model.freeze_epochs=1"))


def test_frozen_then_fine_tuned(tiny_data, tmp_path):
    class Phases(keras.callbacks.Callback):
        """Per fit call: whether the backbone trains, whether at the fine-tuning rate, and its epochs."""

        def __init__(self):
            super().__init__()
            self.seen: list[list] = []

        def set_model(self, model):
            super().set_model(model)
            # Eager steps: tracing a MobileNetV2 training graph twice would cost most of this test.
            model.run_eagerly = True

        def on_train_begin(self, logs=None):
            backbone = self.model.get_layer("backbone")
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.seen.append([backbone.trainable, rate == pytest.approx(0.001 * FINE_TUNE_FACTOR), 0])
            # Frozen: only the head trains; fine-tuning: the backbone's kernels too.
            assert (len(self.model.trainable_weights) > 2) == backbone.trainable

        def on_epoch_begin(self, epoch, logs=None):
            self.seen[-1][2] += 1

    config = load_config(None, ["data.image_size=32", "train.batch_size=16", "train.epochs=2", "model.name=transfer",
                                "model.backbone=MobileNetV2", "model.freeze_epochs=1", "model.weights=none",
                                "train.learning_rate=0.001"])
    phases = Phases()
    result = train(config, tiny_data, tmp_path / "run", callbacks=[phases])
    assert [tuple(s) for s in phases.seen] == [(False, False, 1), (True, True, 1)]
    assert result.epochs == 2


def test_result_line_names_the_epoch_whose_weights_were_saved(tmp_path):
    from catdog.training import TrainResult

    history = {"val_accuracy": [0.6, 0.55], "val_loss": [0.5, 0.7]}
    kept_last = TrainResult(tmp_path, "CPU", 2, 1, 0.6, 0.5, 3.0, history, keep_best=False, monitor="val_loss")
    assert kept_last.line() == (f"last epoch 2/2 kept: val_accuracy 0.5500, val_loss 0.7000 (best val_loss 0.5000 "
                                f"at epoch 1); 3.0 s; run {tmp_path}")
    kept_best = TrainResult(tmp_path, "CPU", 2, 1, 0.6, 0.5, 3.0, history, keep_best=True, monitor="val_loss")
    assert kept_best.line() == f"best epoch 1/2: val_accuracy 0.6000, val_loss 0.5000; 3.0 s; run {tmp_path}"


def test_schedule_error_comes_before_any_run_folder(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--set", "train.epochs=1",
                                       "--set", "train.schedule=plateau", "--set", "train.warmup_epochs=2"])
    assert result.exit_code == 1
    assert ("train.warmup_epochs works with the constant and cosine schedules; got 2 with schedule plateau"
            in result.output)
    assert not (tmp_path / "runs").exists()


def test_a_shortened_run_clamps_its_warm_up_and_says_so(tiny_data, tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "run"), "--quiet",
                                       "--set", "data.image_size=16", "--set", "train.epochs=1",
                                       "--set", "train.schedule=cosine", "--set", "train.warmup_epochs=2"])
    assert result.exit_code == 0, result.output
    assert ("train.warmup_epochs=2 is not shorter than the 1 epochs it warms up; warming up over 0 instead"
            in result.output)


# --- training on every photo (no validation split) -------------------------------------------

def test_training_on_every_photo_without_validation(tiny_data, tmp_path, monkeypatch):
    from catdog.evaluation import evaluate

    config = cfg("train.epochs=2", "data.validation_split=0", "train.keep_best=false")
    result = train(config, tiny_data, tmp_path / "run")
    split = json.loads((result.run_dir / "split.json").read_text())
    assert len(split["train"]) == 48 and split["validation"] == [] and split["test"] == []
    assert result.val_accuracy is None and "val_loss" not in result.history
    assert result.epochs == 2 and result.best_epoch in (1, 2)
    assert result.line() == (f"last epoch 2/2 kept: accuracy {result.history['accuracy'][-1]:.4f}, loss "
                             f"{result.history['loss'][-1]:.4f} on the training photos (none held out); "
                             f"{result.seconds:.1f} s; run {result.run_dir}")
    assert (result.run_dir / "model.keras").is_file()
    # The run's config records the folder given as `data` (config data.dir was null), absolute.
    import yaml

    assert cfg().data.dir is None
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["data"]["dir"] == str(tiny_data.resolve())
    # Nothing was held out, so evaluation needs a folder, and says so.
    with pytest.raises(Exception, match=r"held out no photos \(data.validation_split and data.test_split were "
                                        r"0\); pass --data DIR to evaluate on a folder$"):
        evaluate(result.run_dir)
    assert evaluate(result.run_dir, tiny_data).count == 48


@pytest.mark.parametrize("setting,key", [
    ("train.keep_best=true", "train.keep_best"),
    ("train.early_stopping=2", "train.early_stopping"),
    ("train.schedule=plateau", "train.schedule plateau"),
])
def test_choosing_by_validation_needs_validation_photos(tiny_data, tmp_path, monkeypatch, setting, key):
    monkeypatch.chdir(tmp_path)
    overrides = ["data.validation_split=0", "train.keep_best=false", setting]
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), *sum([["--set", s] for s in overrides], [])])
    assert result.exit_code == 1
    assert (f"{key} needs validation photos, but data.validation_split is 0 and no data.validation_dir is set; "
            f"hold some out or set ") in result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_keras_backup_and_restore_still_overrides_a_later_fit(tmp_path):
    """Why catdog.checkpoints keeps its own per-epoch checkpoint: after BackupAndRestore restores a run,
    the restored epoch stays on the model and a later fit call (the fine-tuning phase) starts there
    instead of at its own initial_epoch. When this fails, Keras fixed it: reconsider BackupAndRestore."""
    x, y = np.zeros((8, 2), "float32"), np.zeros((8, 1), "float32")

    class Seen(keras.callbacks.Callback):
        def __init__(self, stop_after: int | None = None):
            super().__init__()
            self.epochs: list[int] = []
            self.stop_after = stop_after

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.stop_after:
                raise KeyboardInterrupt

    def fit(model, callbacks, **kwargs):
        model.fit(x, y, verbose=0, callbacks=callbacks, **kwargs)

    def model():
        m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        m.compile("sgd", "mse")
        return m

    backup = lambda: keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        fit(model(), [backup(), Seen(stop_after=1)], epochs=4)
    resumed, first, second = model(), Seen(), Seen()
    fit(resumed, [backup(), first], epochs=4)
    resumed.compile("sgd", "mse")
    fit(resumed, [second], initial_epoch=4, epochs=6)
    assert first.epochs == [2, 3]
    assert second.epochs == [2, 3, 4, 5]  # not [4, 5]

"""Progressive resizing (train.image_sizes): the phases it makes, the layer that shrinks training
photos, training at the small size on one learning-rate curve, resuming mid-schedule, the saved
model, the bad configs, and the JAX backend; on 32x32 photos trained at 16x16 then 32x32."""

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
from conftest import write_images

from catdog.cli import main
from catdog.config import load_config
from catdog.errors import ConfigError
from catdog.layers import TrainingResize
from catdog.optimizers import learning_rate
from catdog.plan import Phase, phases, schedule_span, sizes_line
from catdog.training import resume, train

ROOT = Path(__file__).parents[1]
SIZES = "train.image_sizes=[{epoch: 0, size: 16}, {epoch: 1, size: 32}]"
# A one-unit ResNet: the smallest model of the family that takes any size.
TINY = ["data.image_size=32", "train.batch_size=8", "train.epochs=3", "model.name=resnet",
        "model.blocks=[{filters: 4}]", "train.schedule=cosine", "train.warmup_epochs=1", "train.optimizer=adamw",
        "train.weight_decay=0.01"]


def cfg(*overrides: str):
    return load_config(None, [*TINY, *overrides])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("progressive") / "photos"
    write_images(root / "cats", 20, size=32, seed=1)
    write_images(root / "dogs", 20, size=32, seed=2, bright=True)
    return root


# --- phases ---------------------------------------------------------------------------------

def test_phases_split_at_each_size_and_at_the_frozen_backbone():
    assert phases(cfg()) == [Phase(0, 3, False, (32, 32))]
    assert phases(cfg(SIZES)) == [Phase(0, 1, False, (16, 16)), Phase(1, 3, False, (32, 32))]
    transfer = load_config(None, ["data.image_size=32", "model.name=transfer", "model.backbone=MobileNetV2",
                                  "train.epochs=5", "model.freeze_epochs=3", "train.image_sizes=[{epoch: 0, size: 16}, "
                                  "{epoch: 2, size: 24}, {epoch: 4, size: 32}]"])
    plan = phases(transfer)
    assert plan == [Phase(0, 2, True, (16, 16)), Phase(2, 3, True, (24, 24)), Phase(3, 4, False, (24, 24)),
                    Phase(4, 5, False, (32, 32))]
    # One learning-rate schedule per frozen state, whatever the sizes.
    assert [schedule_span(plan, i) for i in range(4)] == [(0, 3), (0, 3), (3, 5), (3, 5)]
    assert sizes_line(transfer, plan) == ("training photos 16x16 for epochs 1-2, 24x24 for epochs 3-4, then 32x32 "
                                          "(train.image_sizes)")
    # A non-square image_size keeps its aspect; `size` is its longer side.
    wide = cfg("data.image_size=[16, 32]", "train.image_sizes=[{epoch: 0, size: 16}]")
    assert phases(wide) == [Phase(0, 3, False, (8, 16))]
    assert sizes_line(wide, phases(wide)) == ("training photos 8x16 for epochs 1-3; validation and predictions at "
                                              "16x32 (data.image_size) (train.image_sizes)")


def test_fractions_scale_the_schedule_with_the_epochs_and_the_image_size():
    steps = "train.image_sizes=[{at: 0, scale: 0.6}, {at: 0.5, scale: 0.8}, {at: 0.78, scale: 1.0}]"
    # large.yaml's schedule: what it was measured as in epochs and pixels (docs/accuracy.md).
    assert phases(cfg("data.image_size=160", "train.epochs=90", steps)) == [
        Phase(0, 45, False, (96, 96)), Phase(45, 70, False, (128, 128)), Phase(70, 90, False, (160, 160))]
    # Its shape at other lengths and sizes: floor(at x epochs) epochs, round(scale x side) pixels.
    assert phases(cfg("data.image_size=[32, 64]", "train.epochs=10", steps)) == [
        Phase(0, 5, False, (19, 38)), Phase(5, 7, False, (26, 51)), Phase(7, 10, False, (32, 64))]
    # 0.29 x 100 is 28.999... in floating point: still epoch 29.
    assert phases(cfg("train.epochs=100", "train.image_sizes=[{at: 0, size: 16}, {at: 0.29, scale: 1}]")) == [
        Phase(0, 29, False, (16, 16)), Phase(29, 100, False, (32, 32))]
    # Too short for every size: an entry that lands on the epoch of the one before it replaces it.
    assert phases(cfg("train.epochs=2", steps)) == [Phase(0, 1, False, (19, 19)), Phase(1, 2, False, (32, 32))]
    assert phases(cfg("train.epochs=1", steps)) == [Phase(0, 1, False, (32, 32))]
    # The README's example, in epochs and in fractions.
    readme = ["data.image_size=160", "train.epochs=50"]
    assert phases(cfg(*readme, "train.image_sizes=[{epoch: 0, size: 112}, {epoch: 35, size: 160}]")) == phases(
        cfg(*readme, "train.image_sizes=[{at: 0, scale: 0.7}, {at: 0.7, scale: 1.0}]"))
    # Fractions and epochs mix; a side never goes below 8 pixels.
    mixed = cfg("train.epochs=4", "train.image_sizes=[{at: 0, scale: 0.1}, {epoch: 1, size: 24}, {at: 0.75, scale: 1}]")
    assert phases(mixed) == [Phase(0, 1, False, (8, 8)), Phase(1, 3, False, (24, 24)), Phase(3, 4, False, (32, 32))]


def test_every_length_of_the_large_config_plans():
    """large.yaml's schedule in fractions holds at any train.epochs: 1 (a test's), 50, its own 90."""
    from catdog.models import check_model
    from catdog.plan import check_config

    for epochs in (1, 2, 3, 50, 90, 200):
        plan = check_config(load_config("large", [f"train.epochs={epochs}"]))
        assert plan[0].start == 0 and plan[-1].end == epochs and plan[-1].size == (160, 160)
    # A run too short for a size is not refused for that size: with two valid 5x5 convs an 8x8
    # photo is too small, but one epoch trains at 32x32 only.
    cnn = ["model.name=cnn", "model.top=global_average", "model.blocks=[{filters: 4, kernel_size: 5, padding: valid}, "
           "{filters: 4, kernel_size: 5, padding: valid}]", "train.image_sizes=[{at: 0, size: 8}, {at: 0.5, scale: 1}]"]
    check_model(cfg(*cnn, "train.epochs=1"))
    with pytest.raises(ConfigError, match=r"train.image_sizes: size 8 \(8x8\) is too small for model cnn"):
        check_model(cfg(*cnn, "train.epochs=2"))


def test_the_layer_resizes_while_training_only():
    layer = TrainingResize((8, 8))
    images = keras.ops.convert_to_tensor(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32"))
    assert tuple(layer(images, training=True).shape) == (2, 8, 8, 3)
    assert tuple(layer(images, training=False).shape) == (2, 16, 16, 3)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(images)), keras.ops.convert_to_numpy(images))
    assert tuple(TrainingResize(None)(images, training=True).shape) == (2, 16, 16, 3)
    assert TrainingResize.from_config(layer.get_config()).size == (8, 8)


def test_a_run_without_the_key_builds_the_same_model_as_before():
    from catdog.models import RESIZE_LAYER, build_model
    from catdog.summary import summarize

    plain = [layer.name for layer in build_model(cfg(), 2).layers]
    sized = summarize(build_model(cfg(SIZES), 2))
    assert RESIZE_LAYER not in plain
    # The layer sits right after the input, before augmentation, declared at data.image_size.
    assert [r.name for r in sized.rows] == [plain[0], RESIZE_LAYER, *plain[1:]]
    row = sized.rows[1]
    assert (row.type, row.params, row.output_shape) == ("TrainingResize", 0, "32×32×3")


def test_tensorflow_trains_the_layer_without_xla():
    from catdog.models import build_model
    from catdog.optimizers import unjittable

    # TensorFlow's XLA has no antialiased resize: compiling with it failed; Keras now trains without it.
    expected = "training_resize" if keras.backend.backend() == "tensorflow" else None
    assert unjittable(build_model(cfg(SIZES), 2)) == expected


def test_a_transfer_backbone_takes_the_small_photos():
    from catdog.models import RESIZE_LAYER, build_model

    config = load_config(None, ["data.image_size=64", "model.name=transfer", "model.backbone=MobileNetV2",
                                "model.weights=none", "train.epochs=2",
                                "train.image_sizes=[{epoch: 0, size: 32}, {epoch: 1, size: 64}]"])
    model = build_model(config, 2)
    model.get_layer(RESIZE_LAYER).size = phases(config)[0].size
    # Eager: tracing a MobileNetV2 training step would cost most of this test.
    model.compile("adam", "categorical_crossentropy", run_eagerly=True)
    # Built for 64x64 (its ImageNet weights file is picked by size), the backbone trains on 32x32.
    assert np.isfinite(model.train_on_batch(np.zeros((2, 64, 64, 3), "float32"), np.eye(2, dtype="float32")))
    assert tuple(model(np.zeros((1, 64, 64, 3), "float32")).shape) == (1, 2)


# --- training -------------------------------------------------------------------------------

class Seen(keras.callbacks.Callback):
    """The learning rate at the start of every training batch."""

    def __init__(self):
        super().__init__()
        self.rates: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class Crash(Exception):
    pass


class CrashIn(keras.callbacks.Callback):
    """Dies in the middle of `epoch` (0-based), after the epochs before it were checkpointed."""

    def __init__(self, epoch: int):
        super().__init__()
        self.at = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.at and batch == 1:
            raise Crash()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


@pytest.fixture
def traced(monkeypatch) -> list[tuple[bool, tuple]]:
    """(training, output height and width) of every TrainingResize call: what each traced step computes."""
    calls: list[tuple[bool, tuple]] = []
    call = TrainingResize.call

    def spy(self, images, training=None):
        out = call(self, images, training=training)
        calls.append((bool(training), tuple(out.shape[1:3])))
        return out

    monkeypatch.setattr(TrainingResize, "call", spy)
    return calls


def weights(run: Path) -> list[np.ndarray]:
    return keras.saving.load_model(run / "model.keras").get_weights()


def test_trains_small_then_full_on_one_rate_curve_and_resumes_mid_schedule(photos, tmp_path, traced):
    said: list[str] = []
    seen = Seen()
    config = cfg(SIZES)
    result = train(config, photos, tmp_path / "sized", report=said.append, callbacks=[seen])
    assert "training photos 16x16 for epoch 1, then 32x32 (train.image_sizes)" in said
    # The training steps of the first epoch computed 16x16 photos, the later ones 32x32; validation
    # (not training) always the declared 32x32.
    training = [size for t, size in traced if t]
    assert training and training[0] == (16, 16) and training[-1] == (32, 32) and set(training) == {(16, 16), (32, 32)}
    assert {size for t, size in traced if not t} == {(32, 32)}
    # The size change kept the optimizer: the rate at every step, the first at 32x32 included, is
    # that of the one warm-up + cosine curve over all 3 epochs (as a run without image_sizes has).
    steps = len(seen.rates) // 3
    curve = learning_rate(config.train, steps, 3)
    assert seen.rates == pytest.approx([float(keras.ops.convert_to_numpy(curve(i))) for i in range(3 * steps)],
                                       rel=1e-5)
    assert seen.rates[steps] > seen.rates[steps + 1] > 0  # at 32x32: on the cosine's way down, no new warm-up
    assert any("model.onnx written" in line for line in said), said  # the export's parity check passed
    assert result.epochs == 3

    # model.keras loads in a fresh process and predicts at data.image_size (the layer is inactive).
    script = ("import sys, numpy as np, keras, catdog.layers; m = keras.saving.load_model(sys.argv[1]); "
              "p = m.predict(np.full((3, 32, 32, 3), 128, 'float32'), verbose=0); "
              "print(p.shape, m.get_layer('training_resize').size, bool(np.allclose(p.sum(1), 1)))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "sized" / "model.keras")], text=True,
                          capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "(3, 2) (32, 32) True"

    # Interrupted in the 32x32 phase and resumed: it continues there, at the size and the rate an
    # uninterrupted run has, and ends with its weights.
    with pytest.raises(Crash):
        train(cfg(SIZES), photos, tmp_path / "resumed", callbacks=[CrashIn(2)])
    traced.clear()
    again = Seen()
    resume(tmp_path / "resumed", callbacks=[again])
    assert {size for t, size in traced if t} == {(32, 32)}
    assert again.rates == pytest.approx(seen.rates[2 * steps:], rel=1e-6)
    for a, b in zip(weights(tmp_path / "sized"), weights(tmp_path / "resumed"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --- bad configs ----------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "line"), [
    (["model.name=article", "model.top=flatten"],
     "train.image_sizes needs a model that takes any photo size; model.name article with model.top flatten has a "
     "Flatten head sized for data.image_size [32, 32]: set model.top=global_average or drop train.image_sizes"),
    (["train.image_sizes=[{epoch: 0, size: 16}, {epoch: 1, size: 48}]"],
     "train.image_sizes[1].size must be at most data.image_size (32): photos are shrunk, never enlarged; got 48"),
    (["train.image_sizes=[{epoch: 0, size: 16}, {epoch: 2, size: 24}, {epoch: 2, size: 32}]"],
     "train.image_sizes[2].epoch must be above the entry before it (2): the epochs increase; got 2"),
    (["train.image_sizes=[{epoch: 1, size: 16}]"],
     "train.image_sizes[0].epoch must be 0 (the size training starts at); got 1"),
    (["train.image_sizes=[{epoch: 0, size: 16}, {epoch: 3, size: 32}]"],
     "train.image_sizes[1].epoch must be below train.epochs (3); got 3"),
    (["train.image_sizes=[{epoch: 0}]"], "train.image_sizes[0] needs one of size and scale; got neither: {'epoch': 0}"),
    (["train.image_sizes=[{epoch: 0, at: 0, size: 16}]"],
     "train.image_sizes[0] needs one of epoch and at; got both: {'epoch': 0, 'at': 0.0, 'size': 16}"),
    (["train.image_sizes=[{at: 0.1, scale: 0.5}]"], "train.image_sizes[0].at must be 0 (the size training starts at); "
     "got 0.1"),
    (["train.image_sizes=[{at: 0, scale: 0.5}, {at: 0.6, scale: 0.7}, {at: 0.5, scale: 1}]"],
     "train.image_sizes[2].at must be above the entry before it (0.6): the epochs increase; got 0.5"),
    (["train.image_sizes=[{epoch: 0, size: 16}, {epoch: 2, size: 24}, {at: 0.34, scale: 1}]"],
     "train.image_sizes[2].at must start above the entry before it (epoch 2): the epochs increase; got 0.34 (epoch 1)"),
    (["train.image_sizes=[{at: 0, scale: 1.5}]"], "train.image_sizes[0].scale must be a number or null in (0.0, 1.0]; "
     "got 1.5 (--set)"),
    # Keras quotes its own reason: 3.8 says "would be negative", later releases "zero or negative".
    (["model.name=cnn", "model.top=global_average", "train.image_sizes=[{epoch: 0, size: 8}]",
      "model.blocks=[{filters: 4, kernel_size: 5, padding: valid}, {filters: 4, kernel_size: 5, padding: valid}]"],
     "train.image_sizes: size 8 (8x8) is too small for model cnn: Computed output size would be"),
])
def test_a_bad_schedule_is_one_line(overrides, line, photos, tmp_path):
    sets = [a for o in [*TINY, SIZES, *overrides] for a in ("--set", o)]
    result = CliRunner().invoke(main, ["train", "--data", str(photos), "--out", str(tmp_path / "run"), *sets])
    assert result.exit_code == 1, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {line}"), result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# --- JAX ------------------------------------------------------------------------------------

JAX_SCRIPT = r"""
import json, sys
from catdog.config import load_config
from catdog.layers import TrainingResize
from catdog.training import train

calls, call = [], TrainingResize.call
def spy(self, images, training=None):
    out = call(self, images, training=training)
    calls.append([bool(training), list(out.shape[1:3])])
    return out
TrainingResize.call = spy
said = []
result = train(load_config(None, json.loads(sys.argv[3])), sys.argv[1], sys.argv[2], report=said.append)
import keras, numpy as np
model = keras.saving.load_model(sys.argv[2] + "/model.keras")
probs = model.predict(np.full((2, 32, 32, 3), 100, "float32"), verbose=0)
print("RESULTS " + json.dumps({"backend": keras.backend.backend(), "epochs": result.epochs, "said": said,
                               "calls": calls, "shape": list(probs.shape)}))
"""


@pytest.mark.slow  # a JAX process of its own (~15 s); test_backends keeps JAX end to end in the default suite
def test_jax_trains_small_then_full(photos, tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (a test extra)")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}
    overrides = json.dumps([*TINY, SIZES, "train.epochs=2"])
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(photos), str(tmp_path / "run"), overrides], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULTS "))
    results = json.loads(line[len("RESULTS "):])
    assert results["backend"] == "jax" and results["epochs"] == 2 and results["shape"] == [2, 2]
    assert "training photos 16x16 for epoch 1, then 32x32 (train.image_sizes)" in results["said"]
    training = [size for t, size in results["calls"] if t]
    assert training[0] == [16, 16] and training[-1] == [32, 32]

"""Uneven folders: the warning, train.class_weight, and what it does to the smaller class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from catdog.cli import main
from catdog.config import load_config
from catdog.errors import ConfigError
from catdog.plan import class_weights, uneven_warning


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_balanced_weights_give_every_class_the_same_total_weight():
    config = load_config(None, ["train.class_weight=balanced"])
    weights = class_weights(config, ["cats", "dogs"], [180, 20])
    assert weights == pytest.approx({0: 200 / 360, 1: 5.0})
    assert 180 * weights[0] == pytest.approx(20 * weights[1])


def test_explicit_weights_by_class_name_and_one_for_the_rest():
    config = load_config(None, ["train.class_weight={dogs: 3}"])
    assert class_weights(config, ["birds", "cats", "dogs"], [5, 5, 5]) == {0: 1.0, 1: 1.0, 2: 3.0}
    assert class_weights(load_config(None), ["cats", "dogs"], [180, 20]) is None


def test_an_unknown_class_name_is_one_line_naming_the_classes_found():
    config = load_config(None, ["train.class_weight={cat: 2, dogs: 1, bird: 1}"])
    with pytest.raises(ConfigError) as info:
        class_weights(config, ["cats", "dogs"], [5, 5], "photos")
    assert str(info.value) == ("train.class_weight names 'cat', 'bird', not a class of the photos; "
                               "the classes found in photos are cats, dogs")


@pytest.mark.parametrize("value, message", [
    ("even", "train.class_weight must be 'balanced' or a mapping {name: number} or null; got 'even' (--set)"),
    ("{cats: 0}", "train.class_weight.cats must be a number > 0.0; got 0.0 (--set)"),
    ("{cats: many}", "train.class_weight.cats must be a number > 0.0; got 'many' (--set)"),
    ("[1, 2]", "train.class_weight must be 'balanced' or a mapping {name: number} or null; got [1, 2] (--set)"),
])
def test_bad_class_weight_values(value, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"train.class_weight={value}"])
    # Compared up to the source in parentheses, which says where the value came from.
    assert str(info.value).rsplit(" (", 1)[0] == message.rsplit(" (", 1)[0]


def test_uneven_warning_above_one_and_a_half_times():
    assert uneven_warning(["cats", "dogs"], [150, 100], weighted=False) is None
    assert uneven_warning(["cats", "dogs"], [151, 100], weighted=False) == (
        "warning: the training photos are uneven (cats 151, dogs 100; 1.5x): set train.class_weight=balanced to "
        "weigh them evenly, and judge the run by balanced accuracy and macro-F1 (catdog evaluate)")
    assert uneven_warning(["a", "b", "c"], [10, 90, 30], weighted=True) == (
        "warning: the training photos are uneven (a 10, b 90, c 30; 9.0x): train.class_weight evens out their "
        "weight in the loss, and judge the run by balanced accuracy and macro-F1 (catdog evaluate)")


def test_train_refuses_an_unknown_class_before_writing_a_run(tiny_data, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", "--data", tiny_data, "--out", out, "--quiet", "--set", "data.image_size=16",
                    "--set", "train.class_weight={cat: 2}")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: train.class_weight names 'cat', not a class of the photos; the classes found in {tiny_data} "
        f"are cats, dogs")
    assert not out.exists()


def test_class_weight_in_accumulated_micro_batches_makes_the_whole_batch_update():
    """Keras's class_weight on catdog's own batches (a PyDataset): micro-batches of 4 accumulated
    into batches of 8 step exactly as batches of 8, and the weights change the step."""
    import keras

    from catdog.batches import batches
    from catdog.models import build_model
    from catdog.optimizers import make_optimizer

    config = load_config(None, ["data.image_size=16", "train.batch_size=8"])
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3)).astype("uint8")
    y = np.eye(2, dtype="float32")[[0, 0, 0, 1] * 4]
    runs = {}
    for micro, weights in ((8, {0: 0.5, 1: 3.0}), (4, {0: 0.5, 1: 3.0}), (8, None)):
        model = build_model(config, 2)
        model.compile(optimizer=make_optimizer(config.train, 0.01, 8 // micro), loss="categorical_crossentropy")
        # shuffle=False: Keras would reorder the batches, so micro-batches would pair differently.
        model.fit(batches(images, np.arange(16), y, micro), epochs=1, verbose=0, class_weight=weights, shuffle=False)
        runs[micro, weights is None] = [keras.ops.convert_to_numpy(w) for w in model.weights]
    for a, b in zip(runs[8, False], runs[4, False], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(runs[8, False], runs[8, True], strict=True))


def write_photos(folder: Path, count: int, brightness: float, rng: np.random.Generator) -> None:
    """Flat photos of one brightness each, drawn from N(brightness, 48): the classes overlap."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        level = rng.normal(brightness, 48)
        pixels = np.clip(level + rng.normal(0, 8, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


# Slow (18 s: two trainings on 200 photos): the weights' arithmetic and their use in every batch
# are the default suite's tests above.
@pytest.mark.slow
def test_class_weights_raise_the_smaller_class_s_recall_on_a_9_to_1_folder(tmp_path):
    """180 darker "common" photos and 20 brighter "rare" ones whose brightness overlaps.

    The best unweighted answer leans on the 9:1 odds: call a photo rare only far above the
    middle of the two classes (about 16% of rare photos; the model, trained here, finds none).
    Balanced weights move the boundary to the middle, where most rare photos lie above it. Scored
    on a separate even folder (60 + 60), so both recalls rest on 60 photos.
    """
    from catdog.evaluation import evaluate
    from catdog.training import train

    rng = np.random.default_rng(7)
    write_photos(tmp_path / "train" / "common", 180, 80, rng)
    write_photos(tmp_path / "train" / "rare", 20, 144, rng)
    write_photos(tmp_path / "test" / "common", 60, 80, rng)
    write_photos(tmp_path / "test" / "rare", 60, 144, rng)
    recall, said = {}, []
    for weight in ("null", "balanced"):
        config = load_config(None, ["data.image_size=16", "data.validation_split=0", "train.keep_best=false",
                                    "train.epochs=15", "train.batch_size=32", "train.learning_rate=0.003",
                                    f"train.class_weight={weight}", f"data.cache_dir={tmp_path / 'cache'}"])
        run = train(config, tmp_path / "train", tmp_path / f"run-{weight}", report=said.append)
        recall[weight] = evaluate(run.run_dir, tmp_path / "test").per_class["rare"]["recall"]
    assert recall["null"] <= 0.3, recall
    assert recall["balanced"] >= 0.6, recall
    assert ("warning: the training photos are uneven (common 180, rare 20; 9.0x): set train.class_weight=balanced "
            "to weigh them evenly, and judge the run by balanced accuracy and macro-F1 (catdog evaluate)") in said
    assert "class weights: common 0.556, rare 5 (train.class_weight)" in said

from __future__ import annotations

import numpy as np

from catdog.config import load_config
from catdog.devices import gpus
from catdog.optimizers import CPU_MICRO_BATCH, micro_batch


def test_micro_batch_divides_the_batch():
    # The default depends on the device: the whole batch on a GPU, CPU_MICRO_BATCH on a CPU.
    assert micro_batch(load_config(None)) == (128 if gpus() else CPU_MICRO_BATCH)
    assert micro_batch(load_config(None, ["train.batch_size=100", "train.micro_batch=32"])) == 25
    assert micro_batch(load_config(None, ["train.batch_size=16"])) == 16
    assert micro_batch(load_config(None, ["train.micro_batch=64"])) == 64
    assert micro_batch(load_config(None, ["train.distribute=mirrored"])) == 128


def test_accumulated_micro_batches_make_the_whole_batch_update():
    import keras

    from catdog.models import build_model
    from catdog.optimizers import make_optimizer

    config = load_config(None, ["data.image_size=16", "train.batch_size=8"])
    x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[[0, 1] * 4]
    weights = []
    for micro in (8, 4):
        model = build_model(config, 2)
        model.compile(optimizer=make_optimizer(config.train, 0.01, 8 // micro), loss="categorical_crossentropy")
        model.fit(x, y, batch_size=micro, epochs=1, shuffle=False, verbose=0)
        weights.append([np.asarray(w) for w in model.get_weights()])
    whole, accumulated = weights
    assert any(not np.allclose(w, keras.ops.convert_to_numpy(v)) for w, v in
               zip(whole, build_model(config, 2).get_weights(), strict=True))  # the step changed the weights
    for a, b in zip(whole, accumulated, strict=True):
        assert np.allclose(a, b, atol=1e-6)

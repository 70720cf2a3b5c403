"""Training's callbacks: the learning curves and the epoch they mark as kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import png_size
from PIL import Image

from catdog.callbacks import best_epoch


def test_train_draws_learning_curves(trained):
    run, _ = trained
    assert png_size(run / "learning_curves.png") == (1100, 420)


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

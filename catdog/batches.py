"""Feeding Keras: targets for a head, CutMix, and batches read from the prepared-image cache.

Keras is imported inside `batches`, so that importing this module never starts TensorFlow
(training sets devices up first; the CLI's light commands never need it).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from catdog.cache import CacheArray


def targets(labels: np.ndarray, num_classes: int, sigmoid: bool) -> np.ndarray:
    """Keras targets: one-hot rows for a softmax head, a 0/1 column for a sigmoid head."""
    if sigmoid:
        return labels.astype("float32").reshape(-1, 1)
    return np.eye(num_classes, dtype="float32")[labels]


def cutmix(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """CutMix (Yun et al., 2019): paste a box of another photo of the batch into each photo.

    The box covers a fraction 1 - lam of the photo, lam ~ Uniform(0, 1) (Beta(1, 1), as in the
    paper), at a uniform centre, clipped at the borders; each target becomes the mix of the two
    targets by the pixel areas they actually show. Returns new arrays; `x` and `y` are untouched.
    """
    n, height, width = x.shape[:3]
    partner = rng.permutation(n)
    cut = np.sqrt(1.0 - rng.uniform())
    cy, cx = rng.integers(height), rng.integers(width)
    top, bottom = np.clip([cy - round(cut * height / 2), cy + round(cut * height / 2)], 0, height)
    left, right = np.clip([cx - round(cut * width / 2), cx + round(cut * width / 2)], 0, width)
    mixed = x.copy()
    mixed[:, top:bottom, left:right] = x[partner, top:bottom, left:right]
    shown = 1.0 - (bottom - top) * (right - left) / (height * width)
    return mixed, (shown * y + (1.0 - shown) * y[partner]).astype(y.dtype)


def batches(images: np.ndarray | CacheArray, indices: np.ndarray, y: np.ndarray | None, batch_size: int,
            shuffle: bool = False, seed: int = 0, mix: float = 0.0, first_epoch: int = 0):
    """A keras.utils.PyDataset of (uint8 images, targets) read from the cache (or an array).

    Reading batches from the on-disk cache keeps memory flat however many photos there are, and
    works on every Keras backend (no tf.data needed). With `mix` > 0 each batch is cut-mixed
    (`cutmix`) with that probability, drawn from (seed, epoch, batch): the same run repeats.
    `first_epoch` is the epoch the first pass is (a resumed run's), so its order is the same.
    """
    import keras

    class _Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            # Two reader threads fetch the next batches while the model trains (pread releases the GIL).
            super().__init__(workers=2, max_queue_size=4)
            self.order = np.asarray(indices)
            self.epoch = first_epoch
            if shuffle:
                self.on_epoch_end()

        def __len__(self) -> int:
            return math.ceil(len(self.order) / batch_size)

        def __getitem__(self, i: int):
            # Sorted indices within a batch turn random reads of the cache file into forward reads.
            chunk = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            x = images[chunk]
            if y is None:
                return (x,)
            if mix:
                rng = np.random.default_rng((seed, self.epoch, i))
                if rng.uniform() < mix:
                    return cutmix(x, y[chunk], rng)
            return x, y[chunk]

        def on_epoch_end(self) -> None:
            if shuffle:
                rng = np.random.default_rng((seed, self.epoch))
                self.order = np.asarray(indices)[rng.permutation(len(indices))]
                self.epoch += 1

    return _Batches()

"""The moving average of the weights (train.ema) as a run uses it: validated, kept and resumed.

Keras's optimizer keeps the average (use_ema) and copies it into the model when fit ends. What the
user gets is the average, so catdog makes it what each epoch is judged and saved by too: the
model holds the averaged weights while validating, and from each epoch's end, where the best
weights and the checkpoint are saved, until the next epoch begins. Keras's SwapEMAWeights
(swap_on_epoch) does most of that, but the swapped weights it leaves at an epoch's end are what a
checkpoint holds, and it settles them only after a full fit's last epoch: an early stop would
end with the trained weights, and a resumed run would train on from the averaged ones.

Keras is imported inside functions, so that importing this module never starts TensorFlow
(training sets devices up first).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def ema_drift() -> float:
    """How far, relatively, Keras's average of float32 weights that never change may stray from
    them: each optimizer call rounds momentum * average + (1 - momentum) * weight, and the average
    settles within an ulp or two of the weight (a simulation of 20,000 calls at momentum 0.5 to
    0.999 stayed within one). Training's "changed no weight" check allows 8 ulps: no learning.
    """
    return float(8 * np.finfo(np.float32).eps)


def ema_callbacks(resumed: bool) -> tuple[Any, Any]:
    """(swapper, settler): two Keras callbacks for a model whose optimizer has use_ema.

    The swapper goes before the callbacks that save or judge an epoch (best weights, early stop,
    checkpoint); the settler last, after any that may stop training. Every checkpoint then holds
    the averages as the model's weights and the trained weights as the optimizer's averages.

    Args:
        resumed: the model was just loaded from such a checkpoint; the next epoch of the same
            optimizer swaps them back first. `swapper.new_optimizer()` says that a phase compiled
            a new optimizer, whose averages start from the model's weights as they are.
    """
    import keras

    from catdog.keras_private import check_ema_swap, ema_settle, ema_swap

    class Swapper(keras.callbacks.SwapEMAWeights):
        def __init__(self) -> None:
            super().__init__()
            self.averaged = resumed  # the model holds the averages (the optimizer the trained weights)
            self.for_test = False

        def swap(self) -> None:
            ema_swap(self)
            self.averaged = not self.averaged

        def new_optimizer(self) -> None:
            self.averaged = False

        def on_epoch_begin(self, epoch, logs=None):
            if self.averaged:
                self.swap()

        def on_epoch_end(self, epoch, logs=None):
            if not self.averaged:
                self.swap()

        def on_test_begin(self, logs=None):
            self.for_test = not self.averaged
            if self.for_test:
                self.swap()

        def on_test_end(self, logs=None):
            if self.for_test:
                self.swap()
                self.for_test = False

        # Nothing predicts during fit; Keras's own would swap back a swap it did not make.
        def on_predict_begin(self, logs=None):
            pass

        def on_predict_end(self, logs=None):
            pass

    swapper = Swapper()
    check_ema_swap(swapper)

    class Settler(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # The last epoch of this fit: fit copies the averages into the model as it ends.
            if swapper.averaged and (self.model.stop_training or epoch + 1 == self.params["epochs"]):
                ema_settle(swapper)

    return swapper, Settler()

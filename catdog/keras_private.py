"""The one place catdog reaches into Keras internals (`keras.src`, private attributes), each use
guarded so that a Keras release that changed them fails in one line instead of misbehaving.

Public Keras has no equivalent for these: the swap of a model's weights with the optimizer's
moving averages (train.ema) exists only inside keras.callbacks.SwapEMAWeights; a layer's
`input`/`output` cannot tell which call of a layer a tensor in a model's graph came from (the graph
as `get_config` serialises it names layers, not tensors); and the multi-worker bug
keras-team/keras#20585 has no supported workaround.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import keras

from catdog.errors import DistributeError, InspectionError, TrainingError

# The Keras releases (first, last; inclusive) the multi-worker trainer patch was written and
# tested against; on others train.distribute=multi_worker stops before training. The first is
# catdog's own floor (pyproject.toml), tested by scripts/check_minimums.sh.
MULTI_WORKER_KERAS = ((3, 8), (3, 15))


def keras_version(text: str | None = None) -> tuple[int, int]:
    """(major, minor) of `text`, by default the installed Keras's version."""
    major, minor = re.findall(r"\d+", text or keras.__version__)[:2]
    return int(major), int(minor)


def check_multi_worker_keras(version: str | None = None) -> None:
    """Raise DistributeError unless `version` (default: the installed Keras) is one the
    multi-worker patch was written for."""
    first, last = MULTI_WORKER_KERAS
    if not first <= keras_version(version) <= last:
        raise DistributeError(
            f"train.distribute multi_worker needs Keras {first[0]}.{first[1]} to {last[0]}.{last[1]} "
            f"(catdog works around keras-team/keras#20585 in those); this is Keras {version or keras.__version__}")


def _changed_graph() -> InspectionError:
    return InspectionError(f"this Keras ({keras.__version__}) keeps a model's graph in a way catdog cannot read; "
                           f"pictures of layers need a Keras release catdog knows")


def _history(tensor: Any) -> tuple[Any, int, int]:
    try:
        return tensor._keras_history
    except AttributeError:
        raise _changed_graph() from None


def output_layer(model: keras.Model) -> keras.layers.Layer:
    """The layer whose call produced the model's (first) output."""
    return _history(model.outputs[0])[0]


def graph_calls(model: keras.Model) -> dict[int, tuple[Any, Any]]:
    """For each layer called exactly once in `model`'s own graph: its (input, output) tensors.

    Found by walking back from the outputs, because a layer's `input`/`output` can mislead: for
    a sub-model they are its inner tensors, not the ones in the graph that calls it, and a layer
    may also have been called elsewhere (the heat map's head re-calls the layers after its feature map).
    A layer called twice in the graph (shared weights) has no single answer and is left out.
    """
    calls: dict[int, list[tuple[Any, Any]]] = {}
    seen: set[tuple[int, int]] = set()
    stack = list(model.outputs)
    while stack:
        operation, node_index, _ = _history(stack.pop())
        if (id(operation), node_index) in seen:
            continue
        seen.add((id(operation), node_index))
        try:
            node = operation._inbound_nodes[node_index]
            ins, outs = node.input_tensors, node.outputs
        except (AttributeError, IndexError):
            raise _changed_graph() from None
        calls.setdefault(id(operation), []).append(
            (ins[0] if len(ins) == 1 else None, outs[0] if len(outs) == 1 else None))
        stack.extend(ins)
    return {key: found[0] for key, found in calls.items()
            if len(found) == 1 and found[0][0] is not None and found[0][1] is not None}


def branches_joining(tensor: Any, target: Any) -> list[Any]:
    """The tensors that join the path from `tensor` to `target` from elsewhere (a shortcut around
    `tensor`): with `tensor`, all that `target` needs. [] when `target` depends on `tensor` alone.

    A model from `tensor` to `target` needs them as inputs too. Asking Keras instead for a model
    from the image and `tensor` makes it re-create the image's input node, which rewrites the source
    model's input tensor to point at that node: the source model's `get_config` (and so its saving
    and its summary) then fails with "could not find node key".
    """
    depends: dict[int, bool] = {id(tensor): True}
    joining: dict[int, Any] = {}
    stack: list[tuple[Any, bool]] = [(target, False)]
    while stack:  # depth first, iteratively: a deep network would pass Python's recursion limit
        t, inputs_done = stack.pop()
        if id(t) in depends:
            continue
        operation, node_index, _ = _history(t)
        try:
            ins = list(operation._inbound_nodes[node_index].input_tensors)
        except (AttributeError, IndexError):
            raise _changed_graph() from None
        if not inputs_done:
            stack.append((t, True))
            stack.extend((i, False) for i in ins if id(i) not in depends)
            continue
        flags = [depends[id(i)] for i in ins]
        depends[id(t)] = any(flags)
        if any(flags):
            joining.update((id(i), i) for i, f in zip(ins, flags, strict=True) if not f)
    return list(joining.values())


def patch_trainer_for_multi_worker() -> None:
    """Work around Keras 3's TensorFlow trainer under MultiWorkerMirroredStrategy.

    keras-team/keras#20585 (also tensorflow/tensorflow#72388): fit() fails on more than one
    worker in two places. (1) Before the first step it all-reduces a whole input batch just to
    learn its shapes, which MultiWorkerMirroredStrategy rejects; the shapes of this worker's
    own part are as good. (2) Each step averages the loss and metrics across workers along
    axis 0, which scalars do not have; they are averaged as scalars here. Both patches change
    nothing for other strategies, and training itself (gradients, all-reduce, variable
    updates) stays TensorFlow's own.
    """
    from keras.src.backend.tensorflow import trainer

    check_multi_worker_keras()
    if getattr(trainer, "_catdog_patched", False):
        return
    is_multi_worker = trainer._collective_all_reduce_multi_worker
    reduce_per_replica = trainer.reduce_per_replica
    symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    @functools.wraps(reduce_per_replica)
    def reduce_scalars(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            return keras.tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    @functools.wraps(symbolic_build)
    def build_from_local_batch(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not is_multi_worker(strategy):
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        batch = None
        # Each step of the epoch iterator ends with the data iterator: (step, it) up to Keras 3.10,
        # (first step, last step, it) from 3.11.
        for *_, it in iterator:
            batch = next(it)
            break
        if batch is None:
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        local = keras.tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], batch)
        with strategy.scope():
            self._symbolic_build(data_batch=local)

    trainer.reduce_per_replica = reduce_scalars
    trainer.TensorFlowTrainer._maybe_symbolic_build = build_from_local_batch
    trainer._catdog_patched = True


# keras.callbacks.SwapEMAWeights's own swap and settle: they know the backends and tf.distribute.
_EMA_METHODS = ("_swap_variables", "_finalize_ema_values")


def check_ema_swap(callback: keras.callbacks.SwapEMAWeights) -> None:
    """Raise TrainingError unless `callback` has the SwapEMAWeights methods `ema_swap` and
    `ema_settle` call (a check made before training, not at the first epoch's end)."""
    if not all(callable(getattr(callback, name, None)) for name in _EMA_METHODS):
        raise TrainingError(f"train.ema: this Keras ({keras.__version__}) swaps averaged weights in a way catdog "
                            f"does not know; train with train.ema=0 or a Keras release catdog knows")


def ema_swap(callback: keras.callbacks.SwapEMAWeights) -> None:
    """Exchange the model's trainable weights with the optimizer's moving averages of them."""
    callback._swap_variables()


def ema_settle(callback: keras.callbacks.SwapEMAWeights) -> None:
    """Copy the model's trainable weights (the averages, swapped in) over the optimizer's averages,
    so that fit's closing finalize_variable_values, which copies the averages into the model, keeps them."""
    callback._finalize_ema_values()

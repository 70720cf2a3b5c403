"""Training on several GPUs or machines with the backend's own engine, per `train.distribute`.

- `none`: one device (the first GPU, else the CPU).
- `mirrored`: every local GPU (or, without GPUs, every logical CPU device) holds a replica of
  the model; tf.distribute.MirroredStrategy on TensorFlow, keras.distribution.DataParallel on JAX.
- `multi_worker`: one process per machine, each with its local GPUs, synchronised by
  tf.distribute.MultiWorkerMirroredStrategy and configured by the standard TF_CONFIG variable
  (TensorFlow only).

`train.batch_size` is the GLOBAL batch: each step splits it over all replicas, so a config
gives the same optimisation on one device or many. The learning rate is therefore never scaled
behind the user's back; raising batch_size to fill more GPUs calls for raising learning_rate by
the same factor (the linear scaling rule), which is the user's choice (see docs/gpus.md).

TensorFlow, JAX and Keras are imported inside functions: strategies must be set up before
TensorFlow starts, and only the backend in use is loaded.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from catdog.config import Config
from catdog.devices import backend as keras_backend
from catdog.devices import configure_gpus, dtype_policy, resolve_precision
from catdog.errors import DistributeError

# One MultiWorkerMirroredStrategy per process: TensorFlow cannot configure collectives twice.
_MULTI_WORKER: Any = None


@dataclass
class Distribution:
    """How this process trains: its strategy, its place among workers, and its dtype policy."""

    mode: str
    backend: str
    replicas: int
    precision: str
    worker: int = 0
    workers: int = 1
    # tf.distribute.Strategy on TensorFlow, keras.distribution.Distribution on JAX, or None.
    engine: Any = None

    @property
    def chief(self) -> bool:
        """Whether this process writes the run folder (worker 0; the only one when not multi-worker)."""
        return self.worker == 0

    def describe(self) -> str:
        """'precision mixed_bfloat16', plus the replicas and workers when distributed."""
        text = f"precision {self.precision}"
        if self.mode != "none":
            text += f"; {self.mode}: {self.replicas} replica{'s' * (self.replicas != 1)}"
            if self.workers > 1:
                text += f" over {self.workers} workers, this is worker {self.worker}"
        return text

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Where to build, compile and fit the model: the strategy's scope and the dtype policy.

        Variables made here are mirrored (TensorFlow) or laid out over the devices (JAX); on JAX
        the scope must cover fit too, since that is when Keras shards each batch.
        """
        with contextlib.ExitStack() as stack:
            if self.engine is not None:
                stack.enter_context(self.engine.scope())
            stack.enter_context(dtype_policy(self.precision))
            yield

    def feed(self, dataset: Any) -> Any:
        """The batches as this distribution can take them (unchanged but on JAX over several devices).

        JAX shards a batch evenly or not at all, so there each batch is cut to a multiple of the
        device count: at most replicas-1 images of the last, partial batch sit out an epoch
        (training reshuffles every epoch, so not always the same ones).
        """
        if self.backend != "jax" or self.replicas == 1:
            return dataset
        return _even_batches(dataset, self.replicas)

    def scratch_dir(self) -> Path:
        """A run folder for a non-chief worker: it must save like the chief, but nobody keeps it."""
        path = Path(tempfile.mkdtemp(prefix=f"catdog-worker{self.worker}-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path


def start(config: Config, backend: str | None = None) -> Distribution:
    """Set up the devices and the strategy for `config`; call it before TensorFlow runs anything.

    MultiWorkerMirroredStrategy must exist before TensorFlow's runtime starts in this process,
    and GPU memory growth must be set before the first allocation, so training calls this first.
    `backend` names the Keras backend (default: the one Keras runs on).

    Raises:
        DistributeError: the backend cannot do the asked distribution, TF_CONFIG is missing or
            malformed, or TensorFlow already ran in this process.
    """
    mode = config.train.distribute
    name = backend or keras_backend()
    if mode != "none" and name == "torch":
        raise DistributeError(f"train.distribute {mode} runs on the tensorflow and jax backends; "
                              f"Keras is on torch (set KERAS_BACKEND, or train.distribute: none)")
    if mode == "multi_worker" and name != "tensorflow":
        raise DistributeError(f"train.distribute multi_worker uses TensorFlow's MultiWorkerMirroredStrategy; "
                              f"Keras is on {name} (set KERAS_BACKEND=tensorflow, or use mirrored for one machine)")
    configure_gpus()
    precision = resolve_precision(config.train.precision)
    if mode == "none":
        return Distribution(mode, name, 1, precision)
    if mode == "mirrored":
        return _mirrored_tf(precision) if name == "tensorflow" else _mirrored_jax(precision)
    return _multi_worker(precision)


def _mirrored_tf(precision: str) -> Distribution:
    import tensorflow as tf

    # MirroredStrategy's default takes the GPUs only; without any, every logical CPU device
    # (one unless configured otherwise) makes training behave the same, just slower.
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
              [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    return Distribution("mirrored", "tensorflow", strategy.num_replicas_in_sync, precision, engine=strategy)


def _mirrored_jax(precision: str) -> Distribution:
    import jax
    import keras

    devices = jax.local_devices()
    data_parallel = keras.distribution.DataParallel(devices=devices)
    return Distribution("mirrored", "jax", len(devices), precision, engine=data_parallel)


def cluster_role(tf_config: str | None = None) -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG, the chief counted as worker 0.

    Raises:
        DistributeError: TF_CONFIG is unset, not JSON, or lacks the cluster or this task.
    """
    raw = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not raw:
        raise DistributeError(f"train.distribute multi_worker needs the TF_CONFIG variable on every worker, "
                              f"e.g. {example}")
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        kind, index = task["type"], int(task["index"])
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DistributeError(f"TF_CONFIG must be JSON with a cluster and this task, e.g. {example}; "
                              f"got {raw!r}") from None
    if kind not in ("chief", "worker"):
        raise DistributeError(f"TF_CONFIG task type must be chief or worker for multi_worker; got {kind!r}")
    members = chiefs if kind == "chief" else workers
    if not 0 <= index < len(members):
        raise DistributeError(f"TF_CONFIG task index {index} is not in the cluster's {len(members)} {kind} address(es)")
    # TensorFlow's rule: the chief task if there is one, else worker 0, does the chief's work.
    return (index if kind == "chief" else len(chiefs) + index), len(chiefs) + len(workers)


def _multi_worker(precision: str) -> Distribution:
    global _MULTI_WORKER
    worker, workers = cluster_role()
    import tensorflow as tf

    from catdog import keras_private

    if _MULTI_WORKER is None:
        keras_private.check_multi_worker_keras()
        try:
            _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as exc:
            if "startup" not in str(exc):
                raise
            raise DistributeError("train.distribute multi_worker must start before TensorFlow runs anything in this "
                                  "process; run catdog train in a fresh process") from None
        keras_private.patch_trainer_for_multi_worker()
    strategy = _MULTI_WORKER
    return Distribution("multi_worker", "tensorflow", strategy.num_replicas_in_sync, precision, worker, workers,
                        engine=strategy)


def _even_batches(dataset: Any, multiple: int) -> Any:
    """A PyDataset yielding `dataset`'s batches cut to a multiple of `multiple` rows."""
    import keras

    class _Even(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                             max_queue_size=dataset.max_queue_size)

        def __len__(self) -> int:
            return len(dataset)

        def __getitem__(self, i: int):
            batch = dataset[i]
            keep = len(batch[0]) // multiple * multiple
            # A batch smaller than the device count cannot be split at all: repeat its rows
            # instead, which weights those few images double for one step.
            if keep == 0:
                rows = np.arange(multiple) % len(batch[0])
                return tuple(part[rows] for part in batch)
            return tuple(part[:keep] for part in batch)

        def on_epoch_begin(self) -> None:
            dataset.on_epoch_begin()

        def on_epoch_end(self) -> None:
            dataset.on_epoch_end()

    return _Even()

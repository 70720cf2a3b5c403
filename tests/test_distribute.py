"""train.distribute: roles from TF_CONFIG, and real mirrored and multi-worker runs on the CPU.

Distributed runs need a fresh process each (logical devices and collectives are fixed when
TensorFlow starts), so they run the CLI in subprocesses with timeouts: a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from catdog import distribute
from catdog.cli import main
from catdog.config import load_config
from catdog.errors import DistributeError

FAST = ["--set", "train.epochs=1", "--set", "data.image_size=16", "--set", "train.batch_size=8"]
TIMEOUT = 240


def tf_config(ports: list[int], index: int, kind: str = "worker") -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": kind, "index": index}})


def test_cluster_role_from_tf_config():
    assert distribute.cluster_role(tf_config([1, 2], 0)) == (0, 2)
    assert distribute.cluster_role(tf_config([1, 2, 3], 2)) == (2, 3)
    with_chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
                             "task": {"type": "worker", "index": 0}})
    assert distribute.cluster_role(with_chief) == (1, 3)  # the chief task, not worker 0, is the chief
    assert distribute.cluster_role(with_chief.replace('"worker", "index"', '"chief", "index"')) == (0, 3)


@pytest.mark.parametrize("value, message", [
    ("", "train.distribute multi_worker needs the TF_CONFIG variable on every worker, e.g. TF_CONFIG="),
    ("{nope", "TF_CONFIG must be JSON with a cluster and this task"),
    ('{"cluster": {"worker": ["a:1"]}}', "TF_CONFIG must be JSON with a cluster and this task"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG task type must be chief or worker for multi_worker; got 'ps'"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
     "TF_CONFIG task index 3 is not in the cluster's 1 worker address(es)"),
])
def test_bad_tf_config_is_one_line(value, message):
    with pytest.raises(DistributeError) as err:
        distribute.cluster_role(value)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_no_distribution_is_one_replica_and_the_chief():
    dist = distribute.start(load_config())
    assert (dist.mode, dist.replicas, dist.chief, dist.engine) == ("none", 1, True, None)
    batches = object()
    assert dist.feed(batches) is batches
    assert dist.describe() == "precision float32"


def test_multi_worker_without_tf_config_fails_in_one_line(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--out", str(tmp_path / "r"), *FAST,
                                       "--set", "train.distribute=multi_worker"])
    assert result.exit_code == 1 and "needs the TF_CONFIG variable" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("backend, mode, message", [
    ("torch", "mirrored", "train.distribute mirrored runs on the tensorflow and jax backends; Keras is on torch"),
    ("jax", "multi_worker", "train.distribute multi_worker uses TensorFlow's MultiWorkerMirroredStrategy; "
                            "Keras is on jax"),
])
def test_backend_without_that_distribution(backend, mode, message):
    with pytest.raises(DistributeError, match=message):
        distribute.start(load_config(None, [f"train.distribute={mode}"]), backend=backend)


def test_even_batches_for_jax_devices():
    import keras

    class Three(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            n = (8, 7, 1)[i]
            return np.arange(n), np.arange(n) * 10

    even = distribute._even_batches(Three(), 2)
    assert len(even) == 3
    assert [len(even[i][0]) for i in range(3)] == [8, 6, 2]
    assert even[2][0].tolist() == [0, 0] and even[2][1].tolist() == [0, 0]


def python(code: str, *, env: dict[str, str] | None = None, cwd: Path) -> subprocess.Popen:
    """A fresh interpreter running `code`, the repo importable, output captured."""
    path = os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))
    full = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.Popen([sys.executable, "-c", code], env=full, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"timed out after {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-3000:]
    return out


def train_code(data: Path, out: Path, *extra: str) -> str:
    args = ["train", "--data", str(data), "--out", str(out), "--quiet", *FAST, *extra]
    return f"from catdog.cli import main; main({args!r})"


def test_mirrored_over_two_logical_cpus_tensorflow(tiny_data, tmp_path):
    setup = ("import tensorflow as tf\n"
             "cpu = tf.config.list_physical_devices('CPU')[0]\n"
             "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n")
    out = finish(python(setup + train_code(tiny_data, tmp_path / "run", "--set", "train.distribute=mirrored"),
                        cwd=tmp_path))
    assert "mirrored: 2 replicas" in out and "best epoch 1/1" in out
    assert (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.slow  # ~30 s on two cores; _even_batches is unit-tested above
def test_mirrored_over_two_cpu_devices_jax(tiny_data, tmp_path):
    # batch_size 7 over 2 devices: every batch is cut to an even size (34 train images: 7,7,7,7,6).
    code = train_code(tiny_data, tmp_path / "run", "--set", "train.distribute=mirrored",
                      "--set", "train.batch_size=7")
    out = finish(python(code, env={"KERAS_BACKEND": "jax",
                                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, cwd=tmp_path))
    assert "jax" in out and "mirrored: 2 replicas" in out and "best epoch 1/1" in out
    assert (tmp_path / "run" / "model.keras").is_file()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# Slow (10-12 s: two worker processes): the default suite trains over two devices in one process
# (test_mirrored_over_two_logical_cpus_tensorflow) and checks the multi-worker settings.
@pytest.mark.slow
def test_multi_worker_two_processes_make_one_model(tiny_data, tmp_path):
    # Prepare the cache once, as on a shared disk one would before starting the workers.
    assert CliRunner().invoke(main, ["prepare", "--data", str(tiny_data), "--set", "data.image_size=16"]).exit_code == 0
    ports = free_ports(2)
    out = tmp_path / "run"
    code = train_code(tiny_data, out, "--set", "train.distribute=multi_worker")
    workers = [python(code, env={"TF_CONFIG": tf_config(ports, i)}, cwd=tmp_path) for i in range(2)]
    try:
        logs = [finish(w) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert "multi_worker: 2 replicas over 2 workers, this is worker 0" in logs[0]
    assert "this is worker 1" in logs[1]
    assert ({"classes.json", "config.yaml", "history.json", "model.keras", "split.json"}
            <= {p.name for p in out.iterdir()})
    assert len(list(tmp_path.rglob("model.keras"))) == 1  # worker 1's copy went to a scratch folder, now gone
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_loss"]) == 1 and np.isfinite(history["val_loss"][0])

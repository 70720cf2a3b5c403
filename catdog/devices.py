"""Which device Keras will train on, in words."""

from __future__ import annotations


def training_device() -> str:
    """'GPU: <name>' when the backend sees a GPU, else 'CPU (<n> cores)'."""
    import os

    import keras

    backend = keras.backend.backend()
    names: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
    elif backend == "jax":
        import jax

        names = [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if names:
        return f"GPU: {', '.join(names)} ({backend})"
    return f"CPU ({os.cpu_count()} cores, {backend})"

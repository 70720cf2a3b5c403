"""The devices Keras sees, and the precision and XLA settings catdog uses on them.

Works on every Keras backend: only the backend in use is imported, so `catdog info` and training
run where TensorFlow is not installed at all (JAX or PyTorch alone).

The backends (Keras, TensorFlow, JAX, torch) and catdog.models are imported inside functions:
GPU settings must be made before a backend starts, and only the backend in use is loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import platform
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from catdog import __version__
from catdog.config import Config

log = logging.getLogger(__name__)

JitCompile = bool | Literal["auto"]


@dataclass(frozen=True)
class Device:
    """One device the backend can train on."""

    kind: str  # "GPU" or "CPU"
    name: str
    # Memory the backend may use, where it says (TensorFlow does not before allocating).
    memory_bytes: int | None = None
    # NVIDIA compute capability (major, minor), where known: it decides the precision.
    compute_capability: tuple[int, int] | None = None

    def line(self) -> str:
        extra = []
        if self.memory_bytes:
            extra.append(f"{self.memory_bytes / 2**30:.1f} GiB")
        if self.compute_capability:
            extra.append("compute capability {}.{}".format(*self.compute_capability))
        return f"{self.kind}: {self.name}" + (f" ({', '.join(extra)})" if extra else "")


def backend() -> str:
    """The Keras backend in use: "tensorflow", "jax" or "torch"."""
    import keras

    return keras.backend.backend()


# The Python package each Keras backend imports, and how to install it.
BACKEND_PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "jax": ("jax", "'jax[cpu]'"),
                    "torch": ("torch", "torch"), "openvino": ("openvino", "openvino"), "numpy": ("numpy", "numpy")}


def chosen_backend() -> tuple[str, str]:
    """(the backend Keras will start, where that was said), read as Keras reads it, without
    importing Keras: KERAS_BACKEND, else the "backend" of $KERAS_HOME/keras.json (~/.keras/keras.json),
    else tensorflow."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    path = os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"), "keras.json")
    try:
        with open(path) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return (name, path) if isinstance(name, str) and name else ("tensorflow", "Keras's default")


def missing_backend(exc: BaseException) -> str | None:
    """One line naming what to install (or set) when `exc` is Keras failing to start its backend
    because the backend's package is not installed or the name is not a backend; None otherwise.

    Keras imports the backend's package when it is first imported, inside whatever catdog
    function needed Keras, and fails there with a traceback through its own modules.
    """
    name, source = chosen_backend()
    said = f"KERAS_BACKEND={name}" if source == "KERAS_BACKEND" else f"{source} selects the Keras backend {name},"
    if isinstance(exc, ValueError) and str(exc).startswith("Unable to import backend"):
        if name not in BACKEND_PACKAGES:
            return f"{said} {'is not a Keras backend' if source == 'KERAS_BACKEND' else 'which does not exist'}; use " \
                   f"tensorflow, jax or torch"
        return None
    package, install = BACKEND_PACKAGES.get(name, (None, None))
    if (isinstance(exc, ImportError) and package is not None and (exc.name or "").split(".")[0] == package
            and importlib.util.find_spec(package) is None):  # not a broken install of it: a bug to show
        return f"{said} but {package} is not installed: pip install {install}"
    return None


def configure_gpus() -> None:
    """Let the backend take GPU memory as it needs it instead of all of it at start.

    Must run before anything allocates on a GPU (the start of training does it first). On
    TensorFlow it turns memory growth on for every GPU; on JAX it turns off XLA's preallocation
    of 75% of the card unless XLA_PYTHON_CLIENT_PREALLOCATE is already set. PyTorch allocates on
    demand already.
    """
    name = backend()
    if name == "jax":
        # Read when JAX starts its GPU client, so it only counts if no JAX computation ran yet.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    elif name == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                # TensorFlow already initialised its GPUs in this process; the setting is fixed now.
                log.warning("GPU memory growth could not be turned on: TensorFlow already started its GPUs")


def gpus() -> list[Device]:
    """The GPUs the Keras backend sees (empty on a CPU-only machine)."""
    name = backend()
    found: list[Device] = []
    if name == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            cc = details.get("compute_capability")
            found.append(Device("GPU", details.get("device_name", gpu.name), None, tuple(cc) if cc else None))
    elif name == "jax":
        import jax

        for d in jax.devices():
            if d.platform != "gpu":
                continue
            cc = getattr(d, "compute_capability", None)
            try:
                memory = (d.memory_stats() or {}).get("bytes_limit")
            except Exception:  # memory_stats is optional per platform and raises when absent.
                memory = None
            found.append(Device("GPU", d.device_kind, memory, _capability(cc)))
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                found.append(Device("GPU", props.name, props.total_memory, (props.major, props.minor)))
    return found


def _capability(value: Any) -> tuple[int, int] | None:
    """'8.6' (JAX's spelling) or (8, 6) as a (major, minor) tuple."""
    if not value:
        return None
    try:
        major, minor = str(value).replace(",", ".").strip("() ").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def cpu() -> Device:
    """The host CPU, named from /proc/cpuinfo where there is one."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return Device("CPU", f"{name} ({os.cpu_count()} cores)")


def training_device() -> str:
    """'GPU: <name> (<backend>)' when the backend sees a GPU, else 'CPU (<n> cores, <backend>)'."""
    names = [g.name for g in gpus()]
    if names:
        return f"GPU: {', '.join(names)} ({backend()})"
    return f"CPU ({os.cpu_count()} cores, {backend()})"


# CPU flags (Linux /proc/cpuinfo names) of native bfloat16 arithmetic.
BF16_CPU_FLAGS = {"amx_bf16", "avx512_bf16"}


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU (empty where the OS does not list them).

    CATDOG_CPU_FLAGS, where set (space-separated, may be empty), stands in for them: the tests pin
    it so that `precision: auto` resolves alike on every machine.
    """
    pinned = os.environ.get("CATDOG_CPU_FLAGS")
    if pinned is not None:
        return set(pinned.split())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def native_bfloat16(flags: set[str] | None = None) -> bool:
    """Whether this CPU (or one with `flags`) has bfloat16 instructions: AMX or AVX512-BF16."""
    return bool((cpu_flags() if flags is None else flags) & BF16_CPU_FLAGS)


def emulated_bfloat16(precision: str, devices: list[Device] | None = None, flags: set[str] | None = None) -> bool:
    """Whether `precision` asks for bfloat16 on a CPU that has no bfloat16 instructions (AMX or
    AVX512-BF16; `flags`, default this CPU's): every such operation is emulated there, about five
    times slower than float32 (docs/speed.md)."""
    if precision != "mixed_bfloat16" or _gpu_list(devices):
        return False
    return not native_bfloat16(flags)


def _gpu_list(devices: list[Device] | None) -> list[Device]:
    """The GPUs among `devices` (default: the ones seen now)."""
    return gpus() if devices is None else [d for d in devices if d.kind == "GPU"]


def resolve_precision(setting: str, devices: list[Device] | None = None, flags: set[str] | None = None) -> str:
    """The Keras dtype policy for `train.precision` on these devices (default: the ones seen now)
    and this CPU (`flags`, default: this machine's).

    "auto" picks mixed_bfloat16 on GPUs of compute capability 8.0 and up (Ampere, Hopper: tensor
    cores run bfloat16 as fast as float16, and bfloat16's float32-sized exponent needs no loss
    scaling), mixed_float16 on 7.x (Volta, Turing: float16 tensor cores, no bfloat16), and float32
    on older GPUs. Without a GPU it picks mixed_bfloat16 on a CPU with bfloat16 instructions (AMX or
    AVX512-BF16: `small` trained about 20% faster so on an Intel Xeon with AMX) and float32 on any
    other, which emulates bfloat16 about five times slower than float32 (docs/speed.md).
    """
    if setting != "auto":
        return setting
    gpu_list = _gpu_list(devices)
    if not gpu_list:
        return "mixed_bfloat16" if native_bfloat16(flags) else "float32"
    # The slowest GPU decides: every replica must run the same policy.
    capability = min((g.compute_capability or (0, 0)) for g in gpu_list)
    if capability >= (8, 0):
        return "mixed_bfloat16"
    if capability >= (7, 0):
        return "mixed_float16"
    return "float32"


def resolve_jit_compile(setting: str) -> JitCompile:
    """What to pass as `model.compile(jit_compile=...)` for `train.jit_compile`.

    "auto" is left to Keras, which compiles with XLA where it pays and works: on JAX (its
    normal way to run), and on TensorFlow only when a GPU is present and every layer supports
    XLA; not on TensorFlow's CPU (compiling costs more than it saves there) nor on PyTorch.
    """
    return {"on": True, "off": False}.get(setting, "auto")


def jit_enabled(setting: str, devices: list[Device] | None = None, warps: bool = False,
                distributed: bool = False) -> bool:
    """Whether XLA compilation will be on for `train.jit_compile`, as `catdog info` reports it.

    `warps`: the model has RandomGeometry, which TensorFlow's XLA cannot compile; `distributed`:
    train.distribute is on, where Keras's "auto" leaves TensorFlow's XLA off. Keras turns XLA
    off in both cases on TensorFlow.
    """
    resolved = resolve_jit_compile(setting)
    name = backend()
    if name == "tensorflow" and (warps or (distributed and resolved == "auto")):
        return False
    if resolved != "auto":
        return bool(resolved)
    if name == "jax":
        return True
    if name == "tensorflow":
        return bool(gpus() if devices is None else [d for d in devices if d.kind == "GPU"])
    return False


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under Keras's `name` policy, then restore the previous one.

    A layer keeps the policy it was built with (and saves it), so the policy only has to be set
    while the model is built; restoring it keeps one training from changing the next model
    built in the same process. The output layers set float32 themselves (see models.head).
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


@dataclass
class Info:
    """Versions, the backend, its devices and the settings catdog would train with."""

    catdog: str
    python: str
    keras: str
    backend: str
    backend_version: str
    devices: list[Device] = field(default_factory=list)
    precision: str = "float32"
    jit_compile: bool = False
    distribute: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [("catdog", self.catdog), ("python", self.python), ("keras", self.keras),
                ("backend", f"{self.backend} {self.backend_version}")]
        rows += [("device", d.line()) for d in self.devices]
        rows += [("precision", self.precision), ("XLA (jit_compile)", "on" if self.jit_compile else "off"),
                 ("distribute", self.distribute)]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def info(config: Any = None) -> Info:
    """What `catdog info` reports: versions, backend, devices, and the resolved train settings.

    Args:
        config: a catdog Config whose `train.precision` and `train.jit_compile` are resolved
            (default: the built-in defaults, both "auto").
    """
    import keras

    if config is None:
        config = Config()
    from catdog.models import warps

    name = backend()
    configure_gpus()  # Listing JAX's GPUs starts its client: without this it would take 75% of each card.
    module = sys.modules.get(name) or __import__(name)
    devices = gpus() + [cpu()]
    return Info(
        catdog=__version__,
        python=platform.python_version(),
        keras=keras.__version__,
        backend=name,
        backend_version=getattr(module, "__version__", "?"),
        devices=devices,
        precision=resolve_precision(config.train.precision, devices),
        jit_compile=jit_enabled(config.train.jit_compile, devices, warps(config.model),
                                config.train.distribute != "none"),
        distribute=config.train.distribute,
    )

"""What `catdog serve` computes, apart from HTTP: its settings, the models, dynamic batching,
and the page's pictures (the HiResCAM heat map and activation maps from catdog.inspection, drawn without
matplotlib).

catdog.inspection (Keras) and ONNX are imported inside functions: the explanation pictures and
model metadata are optional, and answering needs neither.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import json
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from catdog import __version__
from catdog.errors import ImageError
from catdog.images import load_image_bytes
from catdog.prediction import answer, answerer, as_class_probabilities
from catdog.runs import HISTORY_FILE, Run
from catdog.runtime import CONTRACT_FILE, ONNX_FILE, OnnxModel


@dataclass(frozen=True)
class ServeConfig:
    """Where `catdog serve` listens, what it accepts, and how it batches."""

    host: str = "127.0.0.1"  # this machine only; another address is the user's explicit choice
    port: int = 8000
    # A phone photo is 2-8 MB; ten times that is no photo.
    max_bytes: int = 20 * 1024 * 1024
    # 50 MP covers today's phone sensors (48 MP); a header claiming more is refused before decoding.
    max_pixels: int = 50_000_000
    max_images: int = 16  # images in one multipart request
    # What the headers of one request's images may claim together: sixteen 12-MP phone photos
    # (195 MP) fit; sixteen PNGs claiming 49 MP each, which decode into 2.3 GB, do not.
    max_request_pixels: int = 200_000_000
    # Seconds a client gets to send a request's headers (from the connection, or the previous
    # answer) and then its body: enough for a 20 MB photo at 3 Mbit/s; a client that stalls is
    # dropped instead of holding a connection for ever.
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    # Dynamic batching: the most images in one model call, and how long the first waits for company.
    # Eight: per image, a batch of 32 computes no faster on a CPU, and ONNX Runtime's memory arena
    # keeps the largest batch's buffers (warmed at start, so memory does not grow under load).
    max_batch: int = 8
    max_wait_ms: float = 3.0
    # The heat map and activation maps need the Keras model (TensorFlow): off, the server needs only
    # ONNX Runtime when the run holds model.onnx.
    explain: bool = True
    # Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    shutdown_timeout: int = 10


class Reject(Exception):
    """A request answered with a 4xx: the status, the message, the file it concerns, and whether
    the connection closes after the answer (a client that stalled)."""

    def __init__(self, status: int, message: str, file: str | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status, self.message, self.file, self.close = status, message, file, close


def _image_status(message: str) -> int:
    if message.startswith("empty"):
        return 400
    if message.startswith("not an image"):
        return 415
    if message.startswith("decompression bomb"):
        return 413
    return 422  # truncated, corrupt, unsupported


class Batcher:
    """Answers concurrent `infer` requests with one model call per batch.

    The first image waits at most `max_wait` seconds for others; a batch never exceeds
    `max_batch` images (callers send no more than that at once). The model
    runs on one thread: the runtime's own threads use the cores, and calls never overlap.
    """

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], max_batch: int = 8,
                 max_wait: float = 0.003) -> None:
        self.infer, self.max_batch, self.max_wait = infer, max_batch, max_wait
        self.queue: asyncio.Queue = asyncio.Queue()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="catdog-infer")
        self.batches = self.images = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=True)

    async def __call__(self, pixels: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            count = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while count < self.max_batch:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                items.append(item)
                count += len(item[0])
            batch = np.concatenate([pixels for pixels, _ in items]).astype(np.float32)
            try:
                out = await loop.run_in_executor(self.executor, self.infer, batch)
            except Exception as exc:  # noqa: BLE001  (each waiting request gets the failure)
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(batch)
            start = 0
            for pixels, future in items:
                if not future.done():
                    future.set_result(out[start:start + len(pixels)])
                start += len(pixels)


# --- pictures for the page: computed by catdog.inspection, drawn here without matplotlib ----

def _png_data_url(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def heatmap_overlay(pixels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The photo with its heat map blended over it (jet colours, where the evidence lies)."""
    colours = cv2.applyColorMap((np.clip(heatmap, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (0.55 * pixels.astype(np.float32) + 0.45 * colours.astype(np.float32)).astype(np.uint8)


def activation_grid(maps: np.ndarray, gap: int = 2) -> np.ndarray:
    """One layer's (height, width, channels) activations as a grid of grey tiles, each scaled to its own range."""
    height, width, channels = maps.shape
    cols = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / cols)
    grid = np.full((rows * (height + gap) - gap, cols * (width + gap) - gap), 255, np.uint8)
    for c in range(channels):
        m = maps[..., c]
        low, high = float(m.min()), float(m.max())
        tile = (m - low) / (high - low) * 255 if high > low else np.zeros_like(m)
        r, k = divmod(c, cols)
        grid[r * (height + gap):r * (height + gap) + height, k * (width + gap):k * (width + gap) + width] = tile
    return np.repeat(grid[..., None], 3, axis=-1)


class Service:
    """The run's models and what each endpoint computes, apart from HTTP."""

    def __init__(self, run: Run, config: ServeConfig) -> None:
        self.run, self.config = run, config
        self.size, self.resize = run.config.data.image_size, run.config.data.resize
        self.infer = answerer(run)
        self.engine = "onnxruntime" if isinstance(self.infer, OnnxModel) else "keras"
        self.keras = run.model if config.explain else None
        self.decoder = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="catdog-decode")
        self.explainer = ThreadPoolExecutor(1, thread_name_prefix="catdog-explain")
        self.batcher = Batcher(self.infer, config.max_batch, config.max_wait_ms / 1000)
        if self.keras is not None:
            self._explain(np.zeros((*self.size, 3), np.uint8))  # builds the heat map's parts once
        # Every batch size once, largest first: the runtime's buffers reach their final size
        # before serving, so memory does not grow under load.
        for n in range(config.max_batch, 0, -1):
            self.infer(np.zeros((n, *self.size, 3), np.float32))

    def check_pixels(self, uploads: list[tuple[str, bytes]]) -> None:
        """Refuse, from their headers alone, a request whose images claim more than
        `max_request_pixels` together, or one image that its header already condemns.

        Raises:
            Reject: 413 naming the total and the limit, or the one file's own 4xx.
        """
        total = 0
        for name, data in uploads:
            claimed = header_pixels(data)
            if claimed is None or claimed > self.config.max_pixels:
                self.decode(data, name)  # refused by its header, naming the file, before any pixel
            total += claimed or 0
        if total > self.config.max_request_pixels:
            raise Reject(413, f"request images claim {total:,} pixels in all ({len(uploads)} images), over "
                              f"the limit of {self.config.max_request_pixels:,} pixels per request")

    def decode(self, data: bytes, name: str) -> np.ndarray:
        try:
            return load_image_bytes(data, self.size, self.resize, self.config.max_pixels)
        except ImageError as exc:
            raise Reject(_image_status(str(exc)), f"{name}: {exc}", name) from None

    def answers(self, names: list[str], out: np.ndarray) -> list[dict]:
        rows = []
        for name, p in zip(names, as_class_probabilities(out), strict=True):
            label, probability, every = answer(self.run.classes, p)
            rows.append({"file": name, "label": label, "probability": probability, "probabilities": every})
        return rows

    def _explain(self, pixels: np.ndarray) -> dict:
        from catdog import inspection

        heatmap, index, probabilities = inspection.hires_cam(self.keras, pixels)
        first = next((m for m in inspection.feature_maps(self.keras, pixels) if m.kind == "conv"), None)
        label, probability, every = answer(self.run.classes, probabilities, index)
        overlay = _png_data_url(heatmap_overlay(pixels, heatmap))
        # "gradcam" is the same picture under the name it had before the method changed, for
        # clients written then; it goes in a later release.
        result = {"label": label, "probability": probability, "probabilities": every,
                  "image": _png_data_url(pixels), "heatmap": overlay,
                  "heatmap_method": inspection.HEATMAP_METHOD, "gradcam": overlay}
        if first is not None:
            result["activations"] = _png_data_url(activation_grid(first.maps, gap=max(2, first.shape[0] // 50)))
            result["activations_layer"] = (f"{first.name} ({first.layer_type} {first.detail}), "
                                           f"{first.shape[0]}x{first.shape[1]}")
        return result

    def model_info(self) -> dict:
        r = self.run
        info: dict[str, Any] = {"run": r.dir.name, "model": r.config.model.name, "classes": r.classes,
                                "input_size": list(self.size), "resize": self.resize, "pixel_range": [0, 255],
                                "engine": self.engine, "catdog_version": __version__,
                                "explain": self.keras is not None}
        info["parameters"] = self.parameters
        c = self.config
        info["limits"] = {"max_bytes": c.max_bytes, "max_pixels": c.max_pixels, "max_images": c.max_images,
                          "max_request_pixels": c.max_request_pixels}
        info["metrics"] = _metrics(r.dir)  # read each time: an evaluation may run while serving
        return info

    @functools.cached_property
    def parameters(self) -> int | None:
        """The Keras model's parameter count, whichever engine answers; worked out on the first
        request that asks.

        Without Keras loaded (`--no-explain` on ONNX Runtime) it is the count the export contract
        records, or for a run exported before the contract held it, the ONNX graph's weights.
        """
        if self.engine == "keras" or self.keras is not None:
            return int(self.run.model.count_params())
        recorded = _contract_parameters(self.run.dir / CONTRACT_FILE)
        return recorded if recorded is not None else _onnx_parameters(self.run.dir / ONNX_FILE)


def header_pixels(data: bytes) -> int | None:
    """Width x height as an image's header claims it, read without decoding; None when Pillow
    reads no header (or refuses it as a decompression bomb)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the caller decides
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.width * im.height
        except Exception:  # noqa: BLE001  (decoding the same bytes names the problem)
            return None


def _contract_parameters(path: Path) -> int | None:
    """The Keras parameter count the export contract records, if it does."""
    try:
        value = json.loads(path.read_text()).get("parameters")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _onnx_parameters(path: Path) -> int | None:
    """The ONNX graph's weights: its floating-point initializers with at least one dimension.

    Shape constants and scalars (the rescaling's) are not weights; a graph the converter
    simplified (batch normalisation folded into a convolution) can still count differently from
    Keras, which is why the export contract records Keras's count.
    """
    try:
        import onnx

        floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                  onnx.TensorProto.DOUBLE}
        return int(sum(np.prod(t.dims) for t in onnx.load(str(path)).graph.initializer
                       if t.data_type in floats and len(t.dims) > 0))
    except Exception:  # noqa: BLE001  (a count for the page, not worth failing over)
        return None


def _metrics(run_dir: Path) -> dict:
    """The latest evaluation report's accuracy and log loss, and training's final epoch."""
    metrics: dict[str, Any] = {}
    reports = sorted(run_dir.glob("evaluation/*/report.json"), key=lambda p: p.stat().st_mtime)
    if reports:
        try:
            report = json.loads(reports[-1].read_text())
            metrics["evaluation"] = {k: report[k] for k in ("accuracy", "log_loss", "images", "source") if k in report}
        except (OSError, ValueError):
            pass
    try:
        history = json.loads((run_dir / HISTORY_FILE).read_text())
        metrics["last_epoch"] = {k: v[-1] for k, v in history.items() if v}
    except (OSError, ValueError):
        pass
    return metrics

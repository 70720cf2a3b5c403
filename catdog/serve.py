"""`catdog serve`: a trained run behind a JSON API and a web page, on Starlette and uvicorn.

The API is versioned under /v1: `predict` (one image as the raw body, or several as multipart
files), `explain` (one image: probabilities, the HiResCAM heat map over it and the first convolution's
activation maps, for the page at /), `model` and `health`. Concurrent requests are batched:
each request's decoded images wait a few milliseconds in a queue, and one model call answers all
that arrived, so throughput grows with load instead of each request paying a whole model call.
Every bad upload is answered with a 4xx and a JSON error naming the problem.

Needs `pip install 'catdog[serve]'`.

Starlette and uvicorn are imported inside functions: they are an optional extra, and a missing
one is reported in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from catdog.errors import ServeError
from catdog.runs import Run, load_run
from catdog.service import Reject, ServeConfig, Service

log = logging.getLogger("catdog.serve")

__all__ = ["ServeConfig", "ServeError", "build", "is_loopback", "make_app", "serve"]


# The deadline that answers a stalled body with a 408 starts when the handler begins to read;
# the connection's own deadline (see _guarded_h11), which starts when the headers arrive, waits
# this much longer so that the 408 goes out first.
BODY_GRACE = 1.0
# The access log's status for a client that hung up before its request was read (nginx's).
CLIENT_GONE = 499


async def _read_body(request, limit: int, timeout: float) -> bytes:
    """The request body, or a 413 when it is over `limit` bytes, or a 408 when it has not all
    arrived within `timeout` seconds.

    A Content-Length over the limit is answered before any of the body is read; a body without
    one (chunked) as soon as it passes the limit. What the client sends after the answer is
    thrown away as it arrives, until the body ends or the connection's deadline closes it.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Reject(413, f"request {int(length):,} bytes is over the limit of {limit:,} bytes")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Reject(413, f"request body is over the limit of {limit:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise Reject(408, f"request body not received within {timeout:g} s", close=True) from None


def _filename(request) -> str:
    """A raw body's name: the X-Filename header, percent-decoded as UTF-8 (a header holds Latin-1
    only, so the page sends names encoded), or `body`."""
    raw = request.headers.get("x-filename")
    if not raw:
        return "body"
    with contextlib.suppress(UnicodeError):
        raw = raw.encode("latin-1").decode("utf-8")  # a client that sent UTF-8 bytes as they are
    return unquote(raw) or "body"


async def _uploads(request, service: Service) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the request: the raw body, or every file of a multipart form."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    body = await _read_body(request, service.config.max_bytes, service.config.body_timeout)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return [(_filename(request), body)]

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=service.config.max_images, max_fields=100)
    files = [(f.filename or key, await f.read()) for key, f in form.multi_items() if isinstance(f, UploadFile)]
    if not files:
        raise Reject(400, "multipart request holds no file; send images as file fields")
    return files


def make_app(service: Service):
    """The Starlette application for `service`."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    loop_of = asyncio.get_running_loop

    async def decode_all(uploads):
        service.check_pixels(uploads)  # headers only: a request's pixels are bounded before decoding
        loop = loop_of()
        return await asyncio.gather(*(loop.run_in_executor(service.decoder, service.decode, data, name)
                                      for name, data in uploads))

    async def predict(request):
        uploads = await _uploads(request, service)
        pixels = np.stack(await decode_all(uploads))
        step = service.config.max_batch
        out = np.concatenate(await asyncio.gather(*(service.batcher(pixels[i:i + step])
                                                    for i in range(0, len(pixels), step))))
        return JSONResponse({"predictions": service.answers([n for n, _ in uploads], out)})

    async def explain(request):
        if service.keras is None:
            raise Reject(404, "this server runs without heat maps (explain is off)")
        uploads = await _uploads(request, service)
        if len(uploads) != 1:
            raise Reject(400, f"explain takes one image; got {len(uploads)}")
        (pixels,) = await decode_all(uploads)
        result = await loop_of().run_in_executor(service.explainer, service._explain, pixels)
        return JSONResponse({"file": uploads[0][0], **result})

    async def health(request):
        return JSONResponse({"status": "ok", "batches": service.batcher.batches, "images": service.batcher.images})

    async def model(request):
        return JSONResponse(service.model_info())

    page = resources.files("catdog").joinpath("static/index.html").read_text()

    async def index(request):
        return HTMLResponse(page)

    async def rejected(request, exc: Exception):
        assert isinstance(exc, Reject)  # Starlette calls it for Reject only
        body = {"error": exc.message}
        if exc.file is not None:
            body["file"] = exc.file
        return JSONResponse(body, status_code=exc.status, headers={"Connection": "close"} if exc.close else None)

    async def gone(request, exc: Exception):
        # The client hung up before its request was read: nobody to answer, nothing gone wrong here.
        return Response(status_code=CLIENT_GONE)

    async def http_error(request, exc: Exception):
        assert isinstance(exc, HTTPException)  # Starlette calls it for HTTPException only
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        yield
        await service.batcher.stop()
        service.decoder.shutdown(wait=True)
        service.explainer.shutdown(wait=True)

    routes = [Route("/", index), Route("/v1/predict", predict, methods=["POST"]),
              Route("/v1/explain", explain, methods=["POST"]), Route("/v1/health", health),
              Route("/v1/model", model)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={Reject: rejected, HTTPException: http_error, ClientDisconnect: gone})
    return AccessLog(app)


def _printable(text: str) -> str:
    """`text` with control characters, quotes and backslashes escaped (a percent-decoded request
    path can hold a line break or a terminal escape), so that one request stays one log line."""
    return "".join(c if c.isprintable() and c not in '"\\' else '\\"' if c == '"' else ascii(c)[1:-1]
                   for c in text)


class AccessLog:
    """ASGI middleware writing one line per request: client, method, path, status, bytes, milliseconds.

    A client that hung up before its request was read is logged with status 499.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, state = time.perf_counter(), {"status": 0, "bytes": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info('%s "%s %s" %d %dB %.1fms', client[0], _printable(scope["method"]), _printable(scope["path"]),
                     state["status"], state["bytes"], (time.perf_counter() - start) * 1000)


def _guarded_h11(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol with the read deadlines uvicorn lacks: a request's headers
    within `header_timeout` seconds of the connection (or of the previous answer), its body
    within `body_timeout` (plus BODY_GRACE) of its headers; past either, the connection closes.

    uvicorn's own `timeout_keep_alive` ends only a connection that sends nothing after an
    answer; a client that sends part of its headers, or trickles its body, holds it for ever.
    This watches the client's side of h11's state machine after every event uvicorn handles
    (uvicorn's H11Protocol, the same from 0.29 to 0.55).

    Raises:
        ServeError: this uvicorn's H11Protocol is not the one this was written for.
    """
    import h11
    import uvicorn

    unknown = ServeError(f"catdog serve's read deadlines were written for uvicorn 0.29 to 0.55, whose "
                         f"H11Protocol this uvicorn {uvicorn.__version__} lacks: pip install 'uvicorn<0.56'")
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError:
        raise unknown from None
    hooks = ("connection_made", "data_received", "on_response_complete", "connection_lost")
    if not all(callable(getattr(H11Protocol, hook, None)) for hook in hooks):
        raise unknown

    deadlines = {"headers": header_timeout, "body": body_timeout + BODY_GRACE}

    class GuardedH11Protocol(H11Protocol):
        _phase: str | None = None
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._phase = None
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _watch(self) -> None:
            """Start the deadline of what the client is to send next, when that changed."""
            state = self.conn.their_state
            phase = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
            if phase == self._phase or self.transport.is_closing():
                return
            self._phase = phase
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = None if phase is None else self.loop.call_later(deadlines[phase], self._expire)

        def _expire(self) -> None:
            if self.transport.is_closing():
                return
            # An idle connection (a browser opens spare ones) closes quietly; a request begun and
            # left unfinished gets a line. A stalled body was answered with a 408 already.
            if self._phase == "headers" and self.conn.trailing_data[0]:
                client = self.client[0] if self.client else "-"
                log.info("%s request headers not complete within %g s: connection closed", client, header_timeout)
            self.transport.close()

    return GuardedH11Protocol


def _drop_shutdown_cancel(record: logging.LogRecord) -> bool:
    """False for a log record of the lifespan task cancelled at shutdown (a Ctrl+C, not a
    failure): uvicorn logs it with the exception, or Starlette's formatted traceback as text."""
    exc = record.exc_info[1] if record.exc_info else None
    text = str(record.msg).rstrip()
    return not (isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt))
                or (text.startswith("Traceback") and text.endswith("CancelledError")))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build(run: str | Path | Run | None = None, config: ServeConfig | None = None,
          find: Callable[[str], Any] = importlib.util.find_spec):
    """The ASGI application serving `run` (default: the latest run), models loaded and warmed.

    `find` looks modules up (tests pass one that finds nothing).

    Raises:
        ServeError: Starlette, uvicorn or python-multipart is not installed.
        RunError: no usable run folder.
    """
    missing = [m for m in ("starlette", "uvicorn", "multipart") if find(m) is None]
    if missing:
        raise ServeError(f"catdog serve needs {', '.join(missing)}: pip install 'catdog[serve]'")
    r = run if isinstance(run, Run) else load_run(run)
    return make_app(Service(r, config or ServeConfig()))


def serve(run: str | Path | Run | None = None, config: ServeConfig | None = None,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve `run` until SIGINT or SIGTERM; in-flight requests finish first.

    `ready` receives the address (with the port the system chose, for port 0) once the socket
    is bound and the models are loaded. A host other than loopback is logged as a warning: the
    API has no authentication.

    Raises:
        ServeError: the extra is missing, or the address cannot be bound.
    """
    config = config or ServeConfig()
    if not is_loopback(config.host):
        log.warning("serving on %s: anyone who can reach this machine can use the model (no authentication)",
                    config.host)
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    try:
        app = build(run, config)
        protocol = _guarded_h11(config.header_timeout, config.body_timeout)
    except BaseException:
        sock.close()
        raise
    import uvicorn

    # A Ctrl+C can cancel the lifespan task while uvicorn shuts down, which uvicorn logs as an
    # error with a traceback; the server did stop cleanly, so that record is dropped.
    logging.getLogger("uvicorn.error").addFilter(_drop_shutdown_cancel)
    # http: uvicorn's h11 protocol with read deadlines (whether or not httptools is installed);
    # ws: no WebSocket endpoint here, so an upgrade request is answered as plain HTTP.
    server = uvicorn.Server(uvicorn.Config(app, host=config.host, port=port, access_log=False,
                                           log_level="warning", lifespan="on",
                                           http=protocol,
                                           ws="none", timeout_graceful_shutdown=config.shutdown_timeout))
    if ready is not None:
        host = f"[{config.host}]" if family == socket.AF_INET6 else config.host
        ready(f"http://{host}:{port}/")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()

"""catdog serve against a real server process on 127.0.0.1: good and bad uploads, batching of
concurrent requests, the page, the one-line access log and a clean shutdown on SIGTERM."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("onnxruntime")

from conftest import write_images  # noqa: E402

from catdog.cli import main  # noqa: E402
from catdog.config import load_config  # noqa: E402
from catdog.prediction import predict  # noqa: E402
from catdog.serve import ServeError, build, is_loopback  # noqa: E402
from catdog.service import activation_grid  # noqa: E402
from catdog.training import train  # noqa: E402

SIZE = 20


@pytest.fixture(scope="module")
def served_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, photo folder): a tiny article run with model.onnx."""
    root = tmp_path_factory.mktemp("serve")
    write_images(root / "photos" / "cats", 10, size=48, seed=1)
    write_images(root / "photos" / "dogs", 10, size=48, seed=2, bright=True)
    config = load_config(None, [f"data.image_size={SIZE}", "train.batch_size=8", "train.epochs=1",
                                f"data.cache_dir={root / 'cache'}"])
    train(config, root / "photos", root / "run")
    assert (root / "run" / "model.onnx").is_file()
    return root / "run", root / "photos"


# catdog.serve.serve with ServeConfig fields the command line does not set, logging as the CLI does.
SERVE_WITH = """
import json, logging, sys
from catdog.serve import ServeConfig, serve
handler = logging.StreamHandler(sys.stderr)
logger = logging.getLogger("catdog.serve")
logger.addHandler(handler)
logger.setLevel(logging.INFO)
logger.propagate = False
serve(sys.argv[1], ServeConfig(port=0, **json.loads(sys.argv[2])),
      ready=lambda url: print(f"serving {url} (Ctrl+C stops)", file=sys.stderr))
"""


class Server:
    """`catdog serve --port 0` in a child process (or `serve(run, ServeConfig(**config))`); its
    address is read from its first line."""

    def __init__(self, run: Path, *args: str, config: dict | None = None) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        command = (["-c", SERVE_WITH, str(run), json.dumps(config)] if config is not None else
                   ["-c", "from catdog.cli import main; main()", "serve", "--run", str(run), "--port", "0", *args])
        self.proc = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     text=True, env=env)
        self.lines: list[str] = []
        self.url = None
        deadline = time.time() + 120
        while self.url is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"server exited: {''.join(self.lines)}")
            self.lines.append(line)
            match = re.match(r"serving (http://\S+) ", line)
            if match:
                self.url = match.group(1).rstrip("/")
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        for _ in range(200):
            try:
                self.get("/v1/health")
                break
            except OSError:
                time.sleep(0.05)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def request(self, path: str, data: bytes | None = None, headers: dict | None = None,
                method: str | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                body = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        return status, json.loads(body)

    def get(self, path: str) -> tuple[int, dict]:
        return self.request(path)

    def raw(self, data: bytes) -> socket.socket:
        """A connection that has sent `data` (nothing more) to the server."""
        host, port = self.url.removeprefix("http://").split(":")
        conn = socket.create_connection((host, int(port)), timeout=10)
        conn.sendall(data)
        return conn

    def log_line(self, pattern: str, seconds: float = 10) -> str:
        """The first log line that matches `pattern`, waiting for it at most `seconds`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            found = [line for line in self.lines if re.search(pattern, line)]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no log line matches {pattern!r}: {''.join(self.lines[-10:])}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server(served_run):
    s = Server(served_run[0])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def strict_server(served_run):
    """ONNX Runtime only, with half-second read deadlines and small limits, so that tests of them are quick."""
    s = Server(served_run[0], config={"explain": False, "header_timeout": 0.5, "body_timeout": 0.5,
                                      "max_bytes": 1000})
    yield s
    s.stop()


def received(conn: socket.socket, seconds: float = 10) -> tuple[bytes, float]:
    """What the server sends on `conn` until it closes it, and how many seconds that took."""
    start, data = time.perf_counter(), b""
    conn.settimeout(seconds)
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {seconds} s; it sent {data[:200]!r}") from None
    finally:
        conn.close()
    return data, time.perf_counter() - start


def answer_on(conn: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the answer the server sends on `conn`, read without waiting for it to close."""
    conn.settimeout(10)
    response = http.client.HTTPResponse(conn)
    response.begin()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = []
    for i, (name, data) in enumerate(files):
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image{i}\"; filename=\"{name}\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_health_and_model(server):
    assert server.get("/v1/health")[1]["status"] == "ok"
    status, info = server.get("/v1/model")
    assert status == 200
    assert info["classes"] == ["cats", "dogs"] and info["input_size"] == [SIZE, SIZE]
    assert info["engine"] == "onnxruntime" and info["parameters"] > 0
    assert info["pixel_range"] == [0, 255] and "val_accuracy" in info["metrics"]["last_epoch"]


def test_model_reports_the_latest_evaluation(server, served_run):
    from catdog.evaluation import evaluate

    report = evaluate(served_run[0])
    info = server.get("/v1/model")[1]
    assert info["metrics"]["evaluation"]["accuracy"] == pytest.approx(report.accuracy)
    assert info["metrics"]["evaluation"]["images"] == report.count


def test_raw_upload_gives_the_same_answer_as_predict(server, served_run):
    run, photos = served_run
    photo = next(photos.rglob("*.jpg"))
    status, body = server.request("/v1/predict", photo.read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200
    (answer,) = body["predictions"]
    (expected,) = predict([photo], run)
    assert answer["label"] == expected.label
    assert abs(answer["probability"] - expected.probability) < 1e-5
    assert set(answer["probabilities"]) == {"cats", "dogs"}


def test_multipart_several_images_in_order(server, served_run):
    files = sorted(served_run[1].rglob("*.jpg"))[::5]
    body, headers = multipart([(f.name, f.read_bytes()) for f in files])
    status, result = server.request("/v1/predict", body, headers)
    assert status == 200
    assert [p["file"] for p in result["predictions"]] == [f.name for f in files]
    assert [p["label"] for p in result["predictions"]] == [p.label for p in predict(files, served_run[0])]


@pytest.mark.parametrize("name, data, status, message", [
    ("empty", b"", 400, "empty file (0 bytes)"),
    ("text", b"<html>not found</html>", 415, "not an image (unrecognised format)"),
    ("truncated", "TRUNCATED", 422, "truncated JPEG"),
    ("60 MP header", png_claiming(10_000, 6_000), 413, "decompression bomb: header claims 60,000,000 pixels"),
])
def test_bad_raw_upload_is_a_4xx_naming_the_problem(server, served_run, name, data, status, message):
    if data == "TRUNCATED":
        whole = next(served_run[1].rglob("*.jpg")).read_bytes()
        data = whole[: len(whole) // 2]
    got, body = server.request("/v1/predict", data, {"Content-Type": "application/octet-stream"}, method="POST")
    assert got == status, body
    assert message in body["error"]


def test_bad_file_among_several_is_named(server, served_run):
    good = next(served_run[1].rglob("*.jpg")).read_bytes()
    body, headers = multipart([("ok.jpg", good), ("broken.jpg", b"GIF89a nonsense")])
    status, result = server.request("/v1/predict", body, headers)
    assert 400 <= status < 500
    assert result["file"] == "broken.jpg" and result["error"].startswith("broken.jpg: ")


def test_body_over_the_limit_is_413_also_for_a_client_that_sends_it_all(server):
    # A keep-alive client (curl, requests, a browser) that sends the whole body gets its answer:
    # the server throws the rest away as it arrives.
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/predict", b"\xff" * (20 * 1024 * 1024 + 1), {"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": "request 20,971,521 bytes is over the limit of 20,971,520 bytes"}
    conn.close()


def test_content_length_over_the_limit_is_refused_before_the_body_is_sent(server):
    conn = server.raw(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 20971521\r\n\r\n")
    # Answered while all of the body is still to come.
    assert answer_on(conn) == (413, {"error": "request 20,971,521 bytes is over the limit of 20,971,520 bytes"})


def test_chunked_body_over_the_limit_is_413(strict_server):
    chunk = b"x" * 600
    conn = strict_server.raw(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             + (b"258\r\n" + chunk + b"\r\n") * 2)  # 1,200 bytes, and no end yet
    assert answer_on(conn) == (413, {"error": "request body is over the limit of 1,000 bytes"})


def test_client_that_disconnects_mid_upload_is_one_quiet_line(server):
    conn = server.raw(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n" + b"\xff" * 100)
    time.sleep(0.2)
    conn.close()
    server.log_line(r'^127\.0\.0\.1 "POST /v1/predict" 499 0B \d+\.\dms$')
    server.get("/v1/health")  # a later line: anything the hang-up caused is logged by now
    server.log_line(r'"GET /v1/health" 200')
    assert not [line for line in server.lines if "Traceback" in line or "Exception" in line or '" 500 ' in line]


def test_stalled_headers_and_idle_connections_are_dropped(strict_server):
    idle = strict_server.raw(b"")
    stalled = strict_server.raw(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le")
    for conn in (idle, stalled):
        data, seconds = received(conn)
        assert data == b"" and seconds < 5
    strict_server.log_line(r"^127\.0\.0\.1 request headers not complete within 0.5 s: connection closed$")
    # Only the connection that began a request is logged; the idle one closes quietly.
    assert sum("not complete" in line for line in strict_server.lines) == 1


def test_stalled_body_is_answered_408_and_dropped(strict_server):
    conn = strict_server.raw(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"\xff" * 100)
    data, seconds = received(conn)
    assert data.startswith(b"HTTP/1.1 408 ") and b"connection: close" in data.lower() and seconds < 5
    assert data.endswith(b'{"error":"request body not received within 0.5 s"}')
    strict_server.log_line(r'^127\.0\.0\.1 "POST /v1/predict" 408 \d+B \d+\.\dms$')


def test_a_body_nobody_reads_cannot_hold_the_connection(strict_server):
    # /v1/health answers without reading the body; the client trickles the rest of it for ever.
    conn = strict_server.raw(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab")
    conn.settimeout(0.3)
    start, data = time.perf_counter(), b""
    while time.perf_counter() - start < 10:
        try:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        except TimeoutError:
            try:
                conn.sendall(b"c")
            except OSError:
                break
        except OSError:
            break
    conn.close()
    assert data.startswith(b"HTTP/1.1 200 ") and time.perf_counter() - start < 5


def test_images_claiming_too_many_pixels_together_are_refused_before_decoding(server):
    body, headers = multipart([(f"{i}.png", png_claiming(7_000, 7_000)) for i in range(16)])
    start = time.perf_counter()
    status, result = server.request("/v1/predict", body, headers)
    assert status == 413 and time.perf_counter() - start < 5
    assert result == {"error": "request images claim 784,000,000 pixels in all (16 images), over the limit of "
                               "200,000,000 pixels per request"}


def test_control_characters_in_the_path_cannot_forge_log_lines(server):
    forged = "127.0.0.1%20%22GET%20/v1/forged%22%20200%201B%201.0ms"
    conn = server.raw(f"GET /x%0d%0a{forged}%1b[2J%22%5c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert received(conn)[0].startswith(b"HTTP/1.1 404 ")
    line = server.log_line(r'^127\.0\.0\.1 "GET /x')
    # The path, percent-decoded, holds CR LF, quotes, an escape sequence and a backslash: all escaped.
    escaped = r'/x\r\n127.0.0.1 \"GET /v1/forged\" 200 1B 1.0ms\x1b[2J\"\\'
    assert re.fullmatch(r'127\.0\.0\.1 "GET ' + re.escape(escaped) + r'" 404 \d+B \d+\.\dms\n', line), line
    assert not [line for line in server.lines if "/v1/forged" in line and not line.startswith('127.0.0.1 "GET /x')]


def test_protocol_errors_are_answered_by_uvicorn(server):
    conn = server.raw(b"NOT HTTP AT ALL\r\n\r\n")
    data, _ = received(conn)
    assert data.startswith(b"HTTP/1.1 400 ") and data.endswith(b"\r\n\r\nInvalid HTTP request received.")


def test_file_names_are_decoded(server):
    status, body = server.request("/v1/predict", b"plain text", {"X-Filename": "my%20notes%20%C3%A9.txt"})
    assert status == 415
    assert body == {"error": "my notes é.txt: not an image (unrecognised format)", "file": "my notes é.txt"}


def test_model_reports_the_same_parameters_on_both_engines(server, strict_server, served_run):
    from catdog.runs import load_run

    expected = load_run(served_run[0]).model.count_params()
    keras_side, onnx_side = server.get("/v1/model")[1], strict_server.get("/v1/model")[1]
    assert (keras_side["explain"], onnx_side["explain"]) == (True, False)
    assert keras_side["parameters"] == onnx_side["parameters"] == expected
    assert onnx_side["limits"] == {"max_bytes": 1000, "max_pixels": 50_000_000, "max_images": 16,
                                   "max_request_pixels": 200_000_000}


def test_the_contract_s_parameter_count_is_read(tmp_path):
    from catdog.service import _contract_parameters

    path = tmp_path / "model.onnx.json"
    assert _contract_parameters(path) is None  # no contract
    for value, expected in [(438_842, 438_842), (True, None), (-1, None), ("12", None), (None, None)]:
        path.write_text(json.dumps({"classes": ["cats", "dogs"], "parameters": value}))
        assert _contract_parameters(path) == expected
    path.write_text("[1, 2]")
    assert _contract_parameters(path) is None


def test_unknown_path_and_method_are_json_errors(server):
    assert server.get("/v2/predict") == (404, {"error": "Not Found"})
    assert server.get("/v1/predict") == (405, {"error": "Method Not Allowed"})


def test_concurrent_requests_are_batched_and_all_answered(server, served_run):
    photos = sorted(served_run[1].rglob("*.jpg"))
    before = server.get("/v1/health")[1]

    def one(i: int) -> int:
        return server.request("/v1/predict", photos[i % len(photos)].read_bytes())[0]

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(96)))
    assert statuses == [200] * 96
    after = server.get("/v1/health")[1]
    images, batches = after["images"] - before["images"], after["batches"] - before["batches"]
    assert images == 96
    assert batches < images  # some model calls answered several requests


def test_explain_returns_the_heat_map_and_activation_maps(server, served_run):
    photo = next(served_run[1].rglob("*.jpg"))
    status, body = server.request("/v1/explain", photo.read_bytes())
    assert status == 200
    assert body["label"] in ("cats", "dogs") and abs(sum(body["probabilities"].values()) - 1) < 1e-4
    for key in ("image", "heatmap", "activations"):
        assert body[key].startswith("data:image/png;base64,")
        picture = Image.open(io.BytesIO(base64.b64decode(body[key].split(",", 1)[1])))
        assert picture.mode == "RGB"
    assert Image.open(io.BytesIO(base64.b64decode(body["heatmap"].split(",", 1)[1]))).size == (SIZE, SIZE)
    assert body["heatmap_method"] == "HiResCAM"
    assert body["gradcam"] == body["heatmap"]  # the name clients written before HiResCAM read
    assert body["activations_layer"].startswith("conv (Conv2D 5x5 x10)")


def test_page_is_served(server):
    with urllib.request.urlopen(server.url + "/", timeout=30) as response:
        html = response.read().decode()
    assert response.headers["content-type"].startswith("text/html")
    assert 'type="file"' in html and "/v1/explain" in html and 'name="viewport"' in html


def test_access_log_has_one_line_per_request(server):
    server.get("/v1/health")
    time.sleep(0.2)
    lines = [line for line in server.lines if '"GET /v1/health"' in line]
    assert lines and re.fullmatch(r'127\.0\.0\.1 "GET /v1/health" 200 \d+B \d+\.\dms\n', lines[-1])


def test_sigterm_lets_the_request_in_flight_finish(served_run):
    s = Server(served_run[0], "--no-explain")
    photo = next(served_run[1].rglob("*.jpg")).read_bytes()
    host, port = s.url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(photo)}\r\n\r\n").encode()
    conn.sendall(head + photo[:100])  # the request has begun; half its body is still to come
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    conn.sendall(photo[100:])
    response = b""
    while chunk := conn.recv(65536):
        response += chunk
    conn.close()
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b'"predictions"' in response
    # uvicorn ends by re-raising the signal it caught, so the exit status says "terminated".
    assert s.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)


def test_ctrl_c_stops_cleanly(served_run):
    s = Server(served_run[0], "--no-explain")
    assert s.get("/v1/health")[0] == 200
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(timeout=60) == 0
    # Every line the server wrote is read once its stderr ends (a fixed sleep lost the last one in CI).
    s.drain.join(timeout=30)
    assert not s.drain.is_alive()
    assert s.lines[-1] == "stopped\n" and not any("Traceback" in line for line in s.lines)


def test_port_in_use_is_one_line(server, served_run):
    port = server.url.rsplit(":", 1)[1]
    result = CliRunner().invoke(main, ["serve", "--run", str(served_run[0]), "--port", port])
    assert result.exit_code == 1
    assert re.fullmatch(rf"Error: cannot listen on 127\.0\.0\.1:{port}: .+\n", result.stderr)


def test_loopback_only_by_default():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_activation_grid_tiles_every_channel():
    maps = np.random.default_rng(0).random((6, 4, 10)).astype("float32")
    grid = activation_grid(maps, gap=2)
    assert grid.shape == (3 * 8 - 2, 4 * 6 - 2, 3) and grid.dtype == np.uint8


def test_missing_extra_names_it(tmp_path):
    with pytest.raises(ServeError,
                       match=r"^catdog serve needs starlette, uvicorn, multipart: pip install 'catdog\[serve\]'$"):
        build(tmp_path / "no-run", find=lambda name: None)


def test_a_lifespan_cancelled_by_ctrl_c_is_not_logged_as_an_error():
    import asyncio
    import logging

    from catdog.serve import _drop_shutdown_cancel

    def record(msg, exc=None):
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, None, info)

    # Starlette's traceback as text (what a Ctrl+C during shutdown logged), and uvicorn's own record.
    assert not _drop_shutdown_cancel(record("Traceback (most recent call last):\n  ...\n"
                                            "asyncio.exceptions.CancelledError\n"))
    assert not _drop_shutdown_cancel(record("Exception in 'lifespan' protocol\n", asyncio.CancelledError()))
    assert _drop_shutdown_cancel(record("Exception in 'lifespan' protocol\n", RuntimeError("real")))
    assert _drop_shutdown_cancel(record("Traceback (most recent call last):\n  ...\nValueError: bad"))

"""A bounded load on `catdog serve` beside a naive server (one Keras model.predict per request), in one run.

Both servers run on 127.0.0.1 in child processes and get the same load: CLIENTS threads, each
with a keep-alive connection, send REQUESTS photos in all (raw bytes to /v1/predict), BAD of
them bad uploads (empty, not an image, truncated, a PNG header claiming 60 MP). Printed for each:
throughput, p50/p99 latency of the good requests, good requests that failed, bad ones that did
not get a 4xx, and the server's RSS at start, after a warm-up and at the end.

Usage:
    python scripts/bench_serve.py --run RUN --photos FOLDER [--clients 8] [--requests 2000] [--bad 0.1]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

NAIVE_SERVER = r'''
# The tutorial way: decode with PIL, one model.predict per request, inside the request handler.
import io, sys, numpy as np, keras, uvicorn
import catdog.layers  # noqa: F401 (the run's custom layers)
from PIL import Image
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
model = keras.saving.load_model(sys.argv[1])
height, width = model.input_shape[1:3]
async def predict(request):
    image = Image.open(io.BytesIO(await request.body())).convert("RGB").resize((width, height))
    p = model.predict(np.asarray(image, dtype="float32")[None], verbose=0)[0]
    return JSONResponse({"probabilities": p.tolist()})
async def health(request):
    return JSONResponse({"status": "ok"})
app = Starlette(routes=[Route("/v1/predict", predict, methods=["POST"]), Route("/v1/health", health)])
print(f"serving http://127.0.0.1:{sys.argv[2]}/", file=sys.stderr, flush=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
'''


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str]) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stderr:
        match = re.search(r"serving http://127\.0\.0\.1:(\d+)/", line)
        if match:
            port = int(match.group(1))
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            break
    else:
        sys.exit(f"server did not start: {' '.join(cmd)}")
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/v1/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    sys.exit("server never answered /v1/health")


def load(port: int, jobs: list[tuple[str, bytes]], clients: int) -> tuple[float, list]:
    """Send `jobs` from `clients` threads; returns the wall time and (kind, status, seconds) per job."""
    results: list = []
    lock = threading.Lock()
    queue = list(enumerate(jobs))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                _, (kind, body) = queue.pop()
            start = time.perf_counter()
            status = 0
            # A keep-alive connection the server closed after its last answer is opened again
            # once, as HTTP clients do; a second failure counts.
            for _ in range(2):
                try:
                    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/octet-stream"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    if response.getheader("connection", "").lower() == "close":
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                results.append((kind, status, time.perf_counter() - start))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, results


def make_jobs(photos: list[bytes], count: int, bad: float, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    truncated = photos[0][: len(photos[0]) // 2]
    bads = [("bad:empty", b""), ("bad:text", b"<html>404</html>"), ("bad:truncated", truncated),
            ("bad:60MP", png_claiming(10_000, 6_000))]
    return [rng.choice(bads) if rng.random() < bad else ("good", rng.choice(photos)) for _ in range(count)]


def measure(name: str, cmd: list[str], jobs, warmup, clients: int) -> dict:
    proc, port = start(cmd)
    try:
        at_start = rss_mb(proc.pid)
        load(port, warmup, clients)
        after_warmup = rss_mb(proc.pid)
        wall, results = load(port, jobs, clients)
        at_end = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    good = [(s, t) for k, s, t in results if k == "good"]
    bad = [(k, s) for k, s, _ in results if k != "good"]
    latencies = sorted(t for _, t in good)
    return {"name": name, "requests": len(results), "wall": wall, "rate": len(results) / wall,
            "p50": 1000 * statistics.median(latencies), "p99": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "good_failed": sum(1 for s, _ in good if s != 200), "good": len(good),
            "bad_without_4xx": sum(1 for _, s in bad if not 400 <= s < 500), "bad": len(bad),
            "bad_statuses": sorted({f"{k.split(':')[1]}={s}" for k, s in bad}),
            "rss": (at_start, after_warmup, at_end)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--photos", required=True, type=Path, help="Folder of photos (searched recursively).")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--naive-requests", type=int, default=500, help="The naive server's share (it is slow).")
    ap.add_argument("--bad", type=float, default=0.1)
    args = ap.parse_args()
    files = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:64]
    photos = [f.read_bytes() for f in files]
    warmup = make_jobs(photos, 64, 0.0, seed=1)
    catdog = [str(Path(sys.executable).with_name("catdog")), "serve", "--run", str(args.run), "--port", "0"]
    naive = [sys.executable, "-c", NAIVE_SERVER, str(args.run / "model.keras"), str(free_port())]
    rows = [measure("catdog serve (ONNX Runtime, dynamic batching)", catdog,
                    make_jobs(photos, args.requests, args.bad, seed=2), warmup, args.clients),
            measure("naive: one model.predict per request", naive,
                    make_jobs(photos, args.naive_requests, args.bad, seed=3), warmup, args.clients)]
    print(f"{args.clients} clients on 127.0.0.1, {args.bad:.0%} bad uploads, os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| server | requests | req/s | p50 ms | p99 ms | good failed | bad without 4xx | "
          "RSS MB start / warm / end | RSS growth MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, w, e = r["rss"]
        print(f"| {r['name']} | {r['requests']} | {r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['good_failed']}/{r['good']} | {r['bad_without_4xx']}/{r['bad']} | {a:.0f} / {w:.0f} / {e:.0f} | "
              f"{e - w:+.1f} |")
    for r in rows:
        print(f"{r['name']}: bad upload statuses {', '.join(r['bad_statuses'])}")
    print(f"throughput ratio: {rows[0]['rate'] / rows[1]['rate']:.1f}x")


if __name__ == "__main__":
    main()

"""What one request of many huge-claiming images costs `catdog serve`: time to the answer, and the
server's peak RSS before and after it.

The request is multipart with COUNT black PNGs of WIDTH x HEIGHT pixels (under the per-image
limit of 50 MP), each a few hundred kilobytes that decode into WIDTH x HEIGHT x 3 bytes. The
server runs with `--no-explain` (ONNX Runtime) on 127.0.0.1 in a child process. Printed: the
status and error line, seconds to the answer, and the server's peak RSS (VmHWM) before and after.

Usage:
    python scripts/bench_serve_pixels.py --run RUN [--count 16] [--width 7000] [--height 7000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path


def png_of_zeros(width: int, height: int) -> bytes:
    """A valid, black RGB PNG: a few hundred kilobytes that decode into width x height x 3 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    packer, row = zlib.compressobj(9), b"\x00" * (1 + 3 * width)  # filter byte, then the row's pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def peak_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--width", type=int, default=7000)
    parser.add_argument("--height", type=int, default=7000)
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, "-c", "from catdog.cli import main; main()", "serve",
                               "--run", args.run, "--port", "0", "--no-explain"], stderr=subprocess.PIPE, text=True)
    try:
        while True:
            line = server.stderr.readline()
            if not line:
                sys.exit("the server exited before it was ready")
            match = re.match(r"serving http://([\d.]+):(\d+)/", line)
            if match:
                host, port = match.group(1), int(match.group(2))
                break
        boundary = uuid.uuid4().hex
        image = png_of_zeros(args.width, args.height)
        body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"{i}.png\"\r\n"
                        f"Content-Type: image/png\r\n\r\n".encode() + image + b"\r\n" for i in range(args.count))
        body += f"--{boundary}--\r\n".encode()
        time.sleep(1)  # the server answers health by now; its memory has settled
        before = peak_mb(server.pid)
        conn = http.client.HTTPConnection(host, port, timeout=300)
        start = time.perf_counter()
        conn.request("POST", "/v1/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        seconds = time.perf_counter() - start
        after = peak_mb(server.pid)
        claimed = args.count * args.width * args.height
        print(f"{args.count} PNGs of {len(image):,} bytes, each {args.width}x{args.height} "
              f"({claimed:,} pixels in all), {len(body):,} bytes")
        print(f"answer: {response.status} {answer.get('error', '')}")
        print(f"seconds to the answer: {seconds:.2f}")
        print(f"server peak RSS: {before:.0f} MB before, {after:.0f} MB after (+{after - before:.0f} MB)")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()

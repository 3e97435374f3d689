"""Serving: ``python -m mnist_cnn.serve`` timed from the client's side, request to JSON answer.

For each backend (torch, onnx) and with batching on (``max_batch_size=64``) and off (``max_batch_size=1``), a
fresh server process answers three kinds of request (``INPUTS``): a 28×28 PNG uploaded as a multipart file, a
drawing as the page sends its 280×280 canvas (reduced to 70×70: an RGBA PNG of dark ink on white, in a data URL, in
JSON), and the whole 280×280 canvas sent the same way, as a client that does not reduce it would. Each is
sent one at a time (latency p50 and p99 at concurrency 1), then from 32 concurrent clients (images per second, one
image per request); the server's resident memory is read before and after the concurrent requests, and the
machine's load average as each server starts (the figures mean little on a busy machine). The client is
this process, with one kept-alive connection per client (stdlib ``http.client``, a lighter client than requests);
client and server share this machine's cores, as they would on a laptop.
"""

from __future__ import annotations

import base64
import http.client
import importlib.resources
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.drawing import paper_png

BATCHING = {"on": 64, "off": 1}  # max_batch_size
API_KEY_VARIABLE = "MNIST_CNN_API_KEY"  # conf/serve.yaml's api_key
CONCURRENCY = 32
INPUTS = ("png28", "canvas", "canvas280")  # a 28×28 PNG file; the page's drawing as it sends it; the whole canvas
PAGE_JS = importlib.resources.files("mnist_cnn") / "serving" / "static" / "page.js"  # as the server sends it
# the page sends its drawing reduced to this many pixels a side
SENT_SIDE = int(re.search(r"const SENT_SIDE = (\d+);", PAGE_JS.read_text()).group(1))


@dataclass
class Server:
    """A running ``python -m mnist_cnn.serve`` process and its address."""

    process: subprocess.Popen[str]
    url: str

    def rss_mb(self) -> float:
        """The server process's resident memory (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


@contextmanager
def running_server(*overrides: str, env: dict[str, str] | None = None, timeout: float = 180) -> Iterator[Server]:
    """Start ``python -m mnist_cnn.serve port=0 <overrides>`` with this environment, less any API key, plus ``env``;
    wait until ``/health`` answers; stop it with SIGTERM on exit. ``RuntimeError`` with the server's stderr if it
    does not come up within ``timeout`` seconds."""
    environment = {key: value for key, value in os.environ.items() if key != API_KEY_VARIABLE} | (env or {})
    with tempfile.TemporaryFile("w+") as errors:
        command = [sys.executable, "-m", "mnist_cnn.serve", "port=0", *overrides]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=environment)
        try:
            url = _wait_until_up(process, errors, time.monotonic() + timeout)
            yield Server(process, url)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_up(process: subprocess.Popen[str], errors: Any, deadline: float) -> str:
    def failed(why: str) -> RuntimeError:
        process.kill()
        errors.seek(0)
        return RuntimeError(f"the server {why}: {' '.join(process.args)}\n{errors.read()}")

    if not select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise failed("printed no address in time")
    found = re.search(r" at (http://\S+?)/ ", process.stdout.readline())
    if found is None:
        raise failed("did not start")
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{found.group(1)}/health", timeout=5):
                return found.group(1)
        except OSError:  # not answering yet
            time.sleep(0.1)
    raise failed("did not answer /health in time")


@dataclass(frozen=True)
class Payload:
    """A ``POST /predict`` body as a client sends it."""

    content_type: str
    body: bytes


def png_upload(png: bytes) -> Payload:
    """A PNG file as one multipart ``file`` field, as curl -F and requests send it."""
    head = b'--bench\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\nContent-Type: image/png'
    return Payload("multipart/form-data; boundary=bench", head + b"\r\n\r\n" + png + b"\r\n--bench--\r\n")


def canvas_drawing(png: bytes, side: int | None = None) -> Payload:
    """A PNG of dark ink on white, as the page sends its canvas: reduced to ``side`` pixels a side (box means,
    approximating the browser's smoothing; None: as it is), an RGBA PNG in a data URL, in JSON."""
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    image.reduce(image.width // (side or image.width)).save(buffer, "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return Payload("application/json", json.dumps({"images": [data_url]}).encode())


def payloads(root: str | None, count: int) -> dict[str, list[Payload]]:
    """``count`` requests of each kind the bench times (see ``INPUTS``), of test digits."""
    from PIL import Image

    from mnist_cnn.data.files import read_test_split

    images, _ = read_test_split(root)
    digits = [images[index % len(images), 0].numpy() for index in range(count)]
    small = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, "PNG")
        small.append(png_upload(buffer.getvalue()))
    drawings = [paper_png(digit) for digit in digits]
    return {
        "png28": small,
        "canvas": [canvas_drawing(drawing, SENT_SIDE) for drawing in drawings],
        "canvas280": [canvas_drawing(drawing) for drawing in drawings],
    }


def post(connection: http.client.HTTPConnection, payload: Payload) -> None:
    """One ``POST /predict`` on a kept-alive connection; ``RuntimeError`` unless it is answered 200."""
    connection.request("POST", "/predict", body=payload.body, headers={"Content-Type": payload.content_type})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST /predict answered {response.status}: {answer[:200]!r}")


def connection_to(url: str) -> http.client.HTTPConnection:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=60)


def latencies(url: str, bodies: list[Payload], count: int) -> list[float]:
    """Seconds of ``count`` requests sent one after another on one connection."""
    connection = connection_to(url)
    post(connection, bodies[0])  # warm-up: the connection
    times = []
    for index in range(count):
        start = time.perf_counter()
        post(connection, bodies[index % len(bodies)])
        times.append(time.perf_counter() - start)
    connection.close()
    return times


def images_per_second(url: str, bodies: list[Payload], count: int, clients: int = CONCURRENCY) -> float:
    """Images per second answered to ``count`` one-image requests from ``clients`` concurrent clients."""

    def client(number: int) -> None:
        connection = connection_to(url)
        for index in range(number, count, clients):
            post(connection, bodies[index % len(bodies)])
        connection.close()

    with ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        list(pool.map(client, range(clients)))
        return count / (time.perf_counter() - start)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def serve_table(
    model: str, backends: list[str], root: str | None, latency_requests: int, throughput_requests: int
) -> list[dict[str, Any]]:
    """Every backend with batching on and off: for each of ``INPUTS``, p50/p99 ms at concurrency 1 and images/s
    at 32, and the server's resident memory before and after the requests at 32; printed and returned."""
    bodies = payloads(root, 64)
    print(f"serving {model}, upload to JSON answer, one kept-alive connection per client, client on this machine")
    width = {kind: len(kind) + 7 for kind in INPUTS}  # "<kind> img/s" and a space
    header = "".join(f"{f'{kind} p50':>{w}}{f'{kind} p99':>{w}}{f'{kind} img/s':>{w}}" for kind, w in width.items())
    print(f"{'backend':<8} {'batching':<9}{header} {'RSS MB before → after':>22} {'passes':>7} {'load':>5}")
    rows = []
    for backend in backends:
        for batching, max_batch in BATCHING.items():
            overrides = (f"ckpt_path={model}", f"backend={backend}", f"max_batch_size={max_batch}")
            row: dict[str, Any] = {
                "model": model,
                "backend": backend,
                "batching": batching,
                "max_batch_size": max_batch,
                "load": os.getloadavg()[0],  # the machine's 1-minute load average as this row starts
            }
            with running_server(*overrides) as server:
                for kind in INPUTS:
                    times = latencies(server.url, bodies[kind], latency_requests)
                    row[f"{kind}_p50_ms"] = 1000 * percentile(times, 0.5)
                    row[f"{kind}_p99_ms"] = 1000 * percentile(times, 0.99)
                row["rss_mb_before"] = server.rss_mb()
                for kind in INPUTS:
                    row[f"{kind}_images_per_s"] = images_per_second(server.url, bodies[kind], throughput_requests)
                row["rss_mb_after"] = server.rss_mb()
                connection = connection_to(server.url)
                connection.request("GET", "/health")
                health = json.loads(connection.getresponse().read())
                connection.close()
            row["requests"], row["passes"] = health["requests_answered"], health["forward_passes"]
            rows.append(row)
            figures = "".join(
                f"{row[f'{kind}_p50_ms']:>{w}.2f}{row[f'{kind}_p99_ms']:>{w}.2f}{row[f'{kind}_images_per_s']:>{w}.0f}"
                for kind, w in width.items()
            )
            memory = f"{row['rss_mb_before']:.0f} → {row['rss_mb_after']:.0f}"
            print(f"{backend:<8} {batching:<9}{figures} {memory:>22} {row['passes']:>7} {row['load']:>5.2f}")
    for backend in backends:
        on, off = (next(r for r in rows if r["backend"] == backend and r["batching"] == b) for b in BATCHING)
        for kind in INPUTS:
            on[f"{kind}_on/off"] = on[f"{kind}_images_per_s"] / off[f"{kind}_images_per_s"]
        ratios = ", ".join(f"{kind} {on[f'{kind}_on/off']:.2f}×" for kind in INPUTS)
        print(f"{backend}: batching on/off at concurrency {CONCURRENCY}, images/s: {ratios}")
    return rows

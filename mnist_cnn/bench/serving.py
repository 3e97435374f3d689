"""Serving: ``python -m mnist_cnn.serve`` timed from the client's side, PNG upload to JSON answer.

For each backend (torch, onnx) and with batching on (``max_batch_size=64``) and off (``max_batch_size=1``), a
fresh server process answers: requests one at a time (latency p50 and p99 at concurrency 1), then from 32
concurrent clients (images per second, one image per request). The images are test digits drawn on 280×280
white paper, as the page sends them. Client and server share this machine's cores, as they would on a laptop.
"""

from __future__ import annotations

import io
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BATCHING = {"on": 64, "off": 1}  # max_batch_size
API_KEY_VARIABLE = "MNIST_CNN_API_KEY"  # conf/serve.yaml's api_key
CONCURRENCY = 32


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
    import requests

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
            if requests.get(f"{found.group(1)}/health", timeout=5).ok:
                return found.group(1)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise failed("did not answer /health in time")


def paper_png(digit: np.ndarray) -> bytes:
    """A PNG file of an MNIST-formatted digit drawn black on 280×280 white paper, like the page's canvas."""
    from mnist_cnn.inference.images import draw_on_paper

    rows, cols = np.nonzero(digit)
    ink_height, ink_width = np.ptp(rows) + 1, np.ptp(cols) + 1
    height = min(200, round(200 * ink_height / ink_width))  # the ink fits a 200×200 box in the middle
    width = round(ink_width * height / ink_height)
    buffer = io.BytesIO()
    draw_on_paper(digit, (280, 280), height, ((280 - width) // 2, (280 - height) // 2)).save(buffer, "PNG")
    return buffer.getvalue()


def digit_pngs(root: str | None, count: int) -> list[bytes]:
    """``count`` PNG files of test digits (see ``paper_png``)."""
    from mnist_cnn.data.files import read_test_split

    images, _ = read_test_split(root)
    return [paper_png(images[index % len(images), 0].numpy()) for index in range(count)]


def post_png(http: Any, url: str, png: bytes) -> dict[str, Any]:
    response = http.post(f"{url}/predict", files={"file": ("digit.png", png, "image/png")}, timeout=60)
    response.raise_for_status()
    return response.json()


def latencies(url: str, pngs: list[bytes], count: int) -> list[float]:
    """Seconds of ``count`` requests sent one after another on one connection."""
    import requests

    with requests.Session() as http:
        post_png(http, url, pngs[0])  # warm-up: the connection
        times = []
        for index in range(count):
            start = time.perf_counter()
            post_png(http, url, pngs[index % len(pngs)])
            times.append(time.perf_counter() - start)
    return times


def images_per_second(url: str, pngs: list[bytes], count: int, clients: int = CONCURRENCY) -> float:
    """Images per second answered to ``count`` one-image requests from ``clients`` concurrent clients."""
    import requests

    def client(number: int) -> None:
        with requests.Session() as http:
            for index in range(number, count, clients):
                post_png(http, url, pngs[index % len(pngs)])

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
    """Every backend with batching on and off: p50/p99 ms at concurrency 1, images/s at 32; printed and returned."""
    import requests

    pngs = digit_pngs(root, 64)
    print(f"serving {model}: one 280×280 PNG per request, upload to JSON answer; client on the same machine")
    print(f"{'backend':<8} {'batching':<9} {'p50 ms c=1':>11} {'p99 ms c=1':>11} {'images/s c=32':>14} {'passes':>7}")
    rows = []
    for backend in backends:
        for batching, max_batch in BATCHING.items():
            overrides = (f"ckpt_path={model}", f"backend={backend}", f"max_batch_size={max_batch}")
            with running_server(*overrides) as server:
                times = latencies(server.url, pngs, latency_requests)
                rate = images_per_second(server.url, pngs, throughput_requests)
                health = requests.get(f"{server.url}/health", timeout=10).json()
            row = {
                "model": model, "backend": backend, "batching": batching, "max_batch_size": max_batch,
                "p50_ms": 1000 * percentile(times, 0.5), "p99_ms": 1000 * percentile(times, 0.99),
                "images_per_s": rate, "requests": health["requests_answered"], "passes": health["forward_passes"],
            }  # fmt: skip
            rows.append(row)
            print(
                f"{backend:<8} {batching:<9} {row['p50_ms']:>11.1f} {row['p99_ms']:>11.1f} {rate:>14.0f} "
                f"{row['passes']:>7}"
            )
    for backend in backends:
        on, off = (next(r for r in rows if r["backend"] == backend and r["batching"] == b) for b in BATCHING)
        on["on/off"] = on["images_per_s"] / off["images_per_s"]
        print(f"{backend}: batching on/off at concurrency {CONCURRENCY} = {on['on/off']:.2f}× the images/s")
    return rows

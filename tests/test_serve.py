"""``python -m mnist_cnn.serve`` as a client meets it: a real server process on a free loopback port, every route,
every kind of bad input (each followed by a good request), concurrent load, SIGTERM, and the command's own errors."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, Digit, decompression_bomb, run_cli

from mnist_cnn.bench.serving import Server, running_server
from mnist_cnn.inference.classify import predict_images
from mnist_cnn.inference.images import to_mnist
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import most_accurate, read_manifest
from mnist_cnn.weights.resolve import resolve_checkpoint

SERVE_EXTRA = 'needs the serve extra: pip install -e ".[serve]"'
for _package in ("fastapi", "uvicorn", "python_multipart"):
    pytest.importorskip(_package, reason=SERVE_EXTRA)
requests = pytest.importorskip("requests", reason=SERVE_EXTRA)

pytestmark = pytest.mark.xdist_group("serve")  # one worker runs this module, so its servers start once

KEY = "correct horse battery staple"
MAX_IMAGES = 16
MAX_UPLOAD_MB = 2


@pytest.fixture(scope="module")
def server() -> Server:
    """The default server (the most accurate shipped model, torch), with an API key and small limits."""
    env = {"MNIST_CNN_API_KEY": KEY}
    with running_server(f"max_images={MAX_IMAGES}", f"max_upload_mb={MAX_UPLOAD_MB}", env=env) as running:
        yield running


@pytest.fixture()
def client() -> requests.Session:
    with requests.Session() as http:
        http.headers["X-API-Key"] = KEY
        yield http


def predict(client: requests.Session, server: Server, **kwargs: Any) -> requests.Response:
    return client.post(f"{server.url}/predict", timeout=60, **kwargs)


def files(*pngs: bytes) -> dict[str, Any]:
    return {"files": [("file", (f"digit{index}.png", png, "image/png")) for index, png in enumerate(pngs)]}


def assert_still_answers(client: requests.Session, server: Server, digit: Digit) -> None:
    response = predict(client, server, **files(digit.png))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == digit.label


def test_health_names_the_most_accurate_shipped_model_and_models_lists_the_manifest(
    server: Server, client: requests.Session
) -> None:
    manifest = read_manifest()
    best = max(manifest, key=lambda name: manifest[name].test_acc)
    health = client.get(f"{server.url}/health").json()
    assert (health["status"], health["model"], health["backend"]) == ("ok", best, "torch")
    assert (health["max_images"], health["max_upload_mb"], health["api_key_required"]) == (MAX_IMAGES, 2, True)
    assert health["uncertain_below"] == manifest[best].uncertain_below  # its answers are flagged below its own
    models = client.get(f"{server.url}/models").json()
    assert models["served"] == best
    listed = [(model["name"], model["test_acc"]) for model in models["models"]]
    assert listed == [(name, manifest[name].test_acc) for name in sorted(manifest)]


def test_the_page_and_the_docs_come_from_the_app_alone(server: Server) -> None:
    page = requests.get(f"{server.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="pad"' in page.text and 'id="clear"' in page.text and 'type="file"' in page.text
    static = sorted((REPO / "mnist_cnn" / "inference" / "static").iterdir())
    assert {path.name for path in static} == {"index.html", "page.css", "page.js"}
    for path in static:
        served = requests.get(f"{server.url}/static/{path.name}")
        assert served.status_code == 200 and served.text == path.read_text()
        assert "://" not in served.text  # nothing fetched from elsewhere: the page works offline
    assert "swagger" in requests.get(f"{server.url}/docs").text.lower()
    body = requests.get(f"{server.url}/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    assert set(body["content"]) == {"multipart/form-data", "application/json"}


def test_files_base64_and_pixels_get_the_answers_of_predict_images_in_order(
    server: Server, client: requests.Session, confident_digits: list[Digit]
) -> None:
    digits = confident_digits[:5]
    pngs = [digit.png for digit in digits]
    expected = predict_images(load_network(resolve_checkpoint(most_accurate())), pngs)

    uploaded = predict(client, server, **files(*pngs)).json()["predictions"]
    assert [p["label"] for p in uploaded] == [digit.label for digit in digits] == expected.labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in uploaded], expected.probabilities, atol=2e-6)
    for prediction in uploaded:
        ranked = prediction["top_k"]
        assert len(ranked) == 3 and ranked[0] == [prediction["label"], prediction["probability"]]
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
        assert sum(prediction["probabilities"]) == pytest.approx(1, abs=1e-4) and "input" not in prediction

    encoded = [base64.b64encode(png).decode() for png in pngs]
    encoded[0] = f"data:image/png;base64,{encoded[0]}"  # as a canvas's toDataURL gives it
    assert predict(client, server, json={"images": encoded}).json()["predictions"] == uploaded

    pixels = [to_mnist(png) for png in pngs]
    seen = predict(client, server, json={"pixels": [p.tolist() for p in pixels]}, params={"include_input": "true"})
    answered = seen.json()["predictions"]
    assert [p["input"] for p in answered] == [p.tolist() for p in pixels]
    assert [{k: v for k, v in p.items() if k != "input"} for p in answered] == uploaded

    # Two digits overlaid: answers the model is unsure of, flagged as the library flags them.
    blends = [np.maximum(a, b) for a, b in zip(pixels, pixels[1:] + pixels[:1])]
    answer = predict(client, server, json={"pixels": [blend.tolist() for blend in blends]}).json()
    flagged = [prediction["uncertain"] for prediction in answer["predictions"]]
    expected_flags = predict_images(load_network(resolve_checkpoint(most_accurate())), np.stack(blends)).uncertain
    assert flagged == expected_flags.tolist() and any(flagged)
    assert [p["uncertain"] for p in uploaded] == expected.uncertain.tolist() == [False] * len(digits)


def _truncated_png(png: bytes) -> bytes:
    return png[: len(png) // 2]


def _chunks(size: int) -> Any:
    for _ in range(size // 2**16):
        yield b"x" * 2**16


BAD_REQUESTS = {  # name: (request arguments, status, part of the error)
    "not an image": ({"files": {"file": ("notes.txt", b"hello, world", "text/plain")}}, 400, "not a readable image"),
    "empty body": ({"headers": {"Content-Type": "application/json"}}, 400, "the request body is empty"),
    "empty file": ({"files": {"file": ("empty.png", b"", "image/png")}}, 400, "is empty"),
    "truncated png": (None, 400, "not a readable image file"),
    "wrong content type": ({"data": b"1234", "headers": {"Content-Type": "text/plain"}}, 415, "text/plain is not"),
    "malformed json": ({"data": b'{"images": [', "headers": {"Content-Type": "application/json"}}, 400, "not valid"),
    "json list": ({"json": [1, 2]}, 400, 'either "images" or "pixels"'),
    "json without images or pixels": ({"json": {"image": []}}, 400, 'either "images" or "pixels"'),
    "images and pixels": ({"json": {"images": [], "pixels": []}}, 400, 'either "images" or "pixels"'),
    "bad base64": ({"json": {"images": ["not base64!"]}}, 400, "images[0] is not valid base64"),
    "base64 of no image": ({"json": {"images": [base64.b64encode(b"text").decode()]}}, 400, "images[0]: not a"),
    "images not strings": ({"json": {"images": [3]}}, 400, "images[0] must be a string"),
    "pixels of the wrong shape": ({"json": {"pixels": [[[0] * 28] * 27]}}, 400, "got (1, 27, 28)"),
    "ragged pixels": ({"json": {"pixels": [[[0] * 28] * 27 + [[0] * 5]]}}, 400, "unequal lengths"),
    "pixels over 255": ({"json": {"pixels": [[[300] * 28] * 28]}}, 400, "0-255, got values from 300 to 300"),
    "negative pixels": ({"json": {"pixels": [[[-1] * 28] * 28]}}, 400, "0-255"),
    "fractional pixels": ({"json": {"pixels": [[[0.5] * 28] * 28]}}, 400, "fractional or out-of-range"),
    "text pixels": ({"json": {"pixels": [[["a"] * 28] * 28]}}, 400, "not numbers"),
    "too many pixel images": ({"json": {"pixels": [[[0] * 28] * 28] * 17}}, 400, "17 images in one request"),
    "too many base64 images": ({"json": {"images": ["AA=="] * 17}}, 400, "more than the 16 allowed (max_images)"),
    "too many files": (None, 400, "Too many files"),
    "body over max_upload_mb": ({"data": b"{" * (3 * 2**20), "headers": {"Content-Type": "application/json"}},
                                413, "3.0 MB, more than the 2 MB allowed (max_upload_mb)"),
    "chunked body over max_upload_mb": ({"data": _chunks(3 * 2**20), "headers": {"Content-Type": "application/json"}},
                                        413, "over the 2 MB allowed (max_upload_mb)"),
    "bad query": ({"params": {"include_input": "maybe"}, "json": {"pixels": []}}, 400, "include_input"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_gets_a_4xx_saying_what_was_wrong_and_the_next_request_is_answered(
    case: str, server: Server, client: requests.Session, confident_digits: list[Digit]
) -> None:
    arguments, status, message = BAD_REQUESTS[case]
    if case == "truncated png":
        arguments = files(_truncated_png(confident_digits[0].png))
    elif case == "too many files":
        arguments = files(*[confident_digits[0].png] * 17)
    response = predict(client, server, **arguments)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert_still_answers(client, server, confident_digits[0])


def test_a_request_without_the_right_api_key_gets_401(server: Server, confident_digits: list[Digit]) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = requests.post(f"{server.url}/predict", headers=headers, **files(confident_digits[0].png))
        assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
    assert requests.get(f"{server.url}/health").status_code == 200  # only /predict needs the key


def test_unknown_routes_and_methods_answer_json_errors(server: Server, client: requests.Session) -> None:
    missing = client.get(f"{server.url}/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "GET /nothing-here: Not Found"}
    assert client.get(f"{server.url}/predict").status_code == 405


def test_a_decompression_bomb_is_refused_from_its_header_with_memory_flat(
    server: Server, client: requests.Session, confident_digits: list[Digit]
) -> None:
    bomb = decompression_bomb()  # 30,000 × 30,000 pixels: 900 MB once decoded
    assert len(bomb) < MAX_UPLOAD_MB * 2**20
    before = server.rss_mb()
    for arguments in (files(bomb), {"json": {"images": [base64.b64encode(bomb).decode()]}}):
        response = predict(client, server, **arguments)
        assert response.status_code == 400
        assert "claims 900,000,000 pixels, more than the 50,000,000 allowed (max_pixels)" in response.json()["error"]
    assert server.rss_mb() < before + 50
    assert_still_answers(client, server, confident_digits[0])


BAD_UNDER_LOAD = [
    {"files": {"file": ("notes.txt", b"not an image", "text/plain")}},
    {"data": b"{", "headers": {"Content-Type": "application/json"}},
    {"json": {"images": ["%%%"]}},
    {"data": b"1234", "headers": {"Content-Type": "text/plain"}},
    {"json": {"pixels": [[[999] * 28] * 28]}},
]


@pytest.mark.slow
def test_2000_requests_from_32_clients_a_tenth_bad_no_5xx_no_drop_right_labels_memory_flat(
    server: Server, confident_digits: list[Digit]
) -> None:
    total, clients = 2000, 32
    warm_up = 4 * clients
    before_health = requests.get(f"{server.url}/health").json()

    def send(index: int, http: requests.Session) -> tuple[int, int, Any]:
        if index % 10 == 0:
            response = predict(http, server, **BAD_UNDER_LOAD[index // 10 % len(BAD_UNDER_LOAD)])
            return index, response.status_code, response.json()["error"]
        digit = confident_digits[index % len(confident_digits)]
        response = predict(http, server, **files(digit.png))
        return index, response.status_code, response.json()["predictions"][0]["label"] if response.ok else response.text

    def client_loop(number: int, indices: range) -> list[tuple[int, int, Any]]:
        with requests.Session() as http:
            http.headers["X-API-Key"] = KEY
            return [send(index, http) for index in indices if index % clients == number]

    with ThreadPoolExecutor(clients) as pool:  # warm-up: allocations for the largest batches happen now
        list(pool.map(client_loop, range(clients), [range(warm_up)] * clients))
        before = server.rss_mb()
        parts = pool.map(client_loop, range(clients), [range(total)] * clients)
        answers = [answer for part in parts for answer in part]
    after = server.rss_mb()

    assert len(answers) == total  # a dropped connection would have raised in its client
    statuses = [status for _, status, _ in answers]
    assert max(statuses) < 500
    bad = [answer for answer in answers if answer[0] % 10 == 0]
    assert len(bad) == total // 10 and all(400 <= status < 500 for _, status, _ in bad)
    expected = [(200, confident_digits[index % len(confident_digits)].label) for index in range(total)]
    assert [answer for answer in answers if answer[0] % 10 and answer[1:] != expected[answer[0]]] == []
    assert abs(after - before) <= 0.1 * before, f"server memory {before:.0f} MB before, {after:.0f} MB after"
    health = requests.get(f"{server.url}/health").json()
    answered = health["requests_answered"] - before_health["requests_answered"]
    passes = health["forward_passes"] - before_health["forward_passes"]
    good = sum(1 for index in range(warm_up) if index % 10) + sum(1 for index in range(total) if index % 10)
    assert answered == good  # every good request of the warm-up and the run
    assert passes < answered  # concurrent requests shared forward passes


@pytest.mark.slow
def test_sigterm_stops_accepting_answers_the_requests_in_flight_and_exits_0(confident_digits: list[Digit]) -> None:
    digits = confident_digits[:6]
    with running_server("batch_wait_ms=1000") as server:  # each request waits a second for others to join it
        answers: list[Any] = []

        def send(digit: Digit) -> None:
            try:
                response = requests.post(f"{server.url}/predict", timeout=60, **files(digit.png))
                answers.append((digit.label, response.status_code, response.json()["predictions"][0]["label"]))
            except requests.RequestException as error:
                answers.append(error)

        senders = [threading.Thread(target=send, args=(digit,)) for digit in digits]
        for sender in senders:
            sender.start()
        time.sleep(0.4)
        assert answers == []  # all six are in flight
        server.process.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(50):
            try:
                requests.get(f"{server.url}/health", timeout=1)
            except requests.ConnectionError:
                refused = True
                break
            time.sleep(0.05)
        for sender in senders:
            sender.join()
        assert refused  # new connections were turned away while the six were still being answered
        assert sorted(answers) == sorted((digit.label, 200, digit.label) for digit in digits)
        assert server.process.wait(timeout=60) == 0
        assert server.process.stdout.read().strip() == "stopped"


@pytest.mark.slow
def test_the_onnx_backend_answers_like_torch(confident_digits: list[Digit]) -> None:
    pytest.importorskip("onnxruntime", reason='needs the export extra: pip install -e ".[export]"')
    pytest.importorskip("onnxscript", reason='needs the export extra: pip install -e ".[export]"')
    digits = confident_digits[:4]
    expected = predict_images(load_network(resolve_checkpoint("lenet5")), [digit.png for digit in digits])
    with running_server("ckpt_path=lenet5", "backend=onnx") as server:
        health = requests.get(f"{server.url}/health").json()
        answer = requests.post(f"{server.url}/predict", **files(*(digit.png for digit in digits))).json()
    assert (health["model"], health["backend"]) == ("lenet5", "onnx")
    predictions = answer["predictions"]
    assert [p["label"] for p in predictions] == expected.labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected.probabilities, atol=1e-4)


@pytest.mark.slow
def test_a_taken_port_and_a_missing_checkpoint_fail_with_one_line_before_loading_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for overrides, message in (
            ((f"port={port}",), f"cannot listen on 127.0.0.1:{port} (Address already in use): choose another port="),
            (("ckpt_path=nothing.ckpt",), "ckpt_path=nothing.ckpt: no such file or directory, nor a shipped model"),
        ):  # the options' ranges are checked for every command in test_config.py
            result = run_cli("mnist_cnn.serve", *overrides, cwd=tmp_path, timeout=120)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


@pytest.mark.slow
@pytest.mark.parametrize(
    ("package", "overrides", "extra"),
    [("fastapi", (), "serve"), ("onnxruntime", ("backend=onnx",), "export")],
)
def test_a_missing_extra_is_named_with_its_install_command(
    package: str, overrides: tuple[str, ...], extra: str, tmp_path: Path
) -> None:
    hidden = tmp_path / "hidden" / package  # a package that fails to import, first on the path
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(f"raise ImportError(\"No module named '{package}'\", name='{package}')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "hidden"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "mnist_cnn.serve", *overrides]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(f'({package}): pip install "mnist_cnn[{extra}]"')
    assert "Traceback" not in result.stderr

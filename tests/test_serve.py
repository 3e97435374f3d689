"""``python -m mnist_cnn.serve`` as a client meets it.

In this process (FastAPI's TestClient, the app as the command builds it, the most accurate shipped model): every
route, every kind of bad input (each followed by a good request), the decode limits, the Host check, the security
headers, HEAD, /docs offline, no filesystem path in any answer. In real server processes on free loopback ports,
where the transport matters: a port already taken, the request head's size and time limits, idle connections, the
concurrency limit, chunked bodies, concurrent load, SIGTERM, the onnx backend and the command's own errors.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import importlib
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
pytest.importorskip("swagger_ui_bundle", reason="the serve extra is not installed")
pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2 (the dev extra)")
requests = pytest.importorskip("requests", reason="the dev extra is not installed")

from conftest import REPO, Digit, decompression_bomb
from fastapi.testclient import TestClient
from helpers.cli import run_command, run_process
from helpers.imports import refusing_imports
from PIL import EpsImagePlugin, Image, PngImagePlugin

from benchmarks.serving import Server, running_server
from mnist_cnn.config import MAX_PIXELS, ServeConfig, compose_config, validate
from mnist_cnn.inference.backends import load_classifier
from mnist_cnn.inference.classify import uncertainty_threshold
from mnist_cnn.inference.predict import predict_images
from mnist_cnn.preprocess.images import to_mnist
from mnist_cnn.serving import server as server_module
from mnist_cnn.serving.batching import SWITCH_INTERVAL_S, DynamicBatcher
from mnist_cnn.serving.server import create_app
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import most_accurate, read_manifest
from mnist_cnn.weights.resolve import resolve_checkpoint

pytestmark = pytest.mark.xdist_group("serve")  # one worker runs this module, so its servers start once

KEY = "correct horse battery staple"
MAX_IMAGES = 16
MAX_UPLOAD_MB = 2
LOCAL = "http://127.0.0.1"  # the TestClient's requests name 127.0.0.1 in their Host header
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 1 600000000 {pop} for showpage\n"  # loops in Ghostscript


def serve_config(*overrides: str, **changes: Any) -> ServeConfig:
    """conf/serve.yaml as the command composes it, with the tests' limits, ``overrides`` and ``changes``; the torch
    backend, which needs no export (the default, onnx, is tested by running the command)."""
    limits = f"max_images={MAX_IMAGES}", f"max_upload_mb={MAX_UPLOAD_MB}"
    cfg = compose_config(*limits, "backend=torch", *overrides, config="serve")
    return dataclasses.replace(validate(cfg), **changes)


@pytest.fixture(scope="module")
def network() -> Any:
    return load_network(resolve_checkpoint(most_accurate()))


def app_client(network: Any, config: ServeConfig, model: str = "", **options: Any) -> TestClient:
    """A TestClient of the app that ``python -m mnist_cnn.serve`` builds for ``network`` and ``config``."""
    app = create_app(
        load_classifier(network, config.backend), config, model or most_accurate(), uncertainty_threshold(network)
    )
    return TestClient(app, base_url=LOCAL, **options)


@pytest.fixture(scope="module")
def client(network: Any) -> Iterator[TestClient]:
    """The app as the command builds it (the most accurate shipped model), on the torch backend, with an API key
    and small limits."""
    with app_client(network, serve_config(api_key=KEY), headers={"X-API-Key": KEY}) as running:
        yield running


def files(*pngs: bytes) -> dict[str, Any]:
    return {"files": [("file", (f"digit{index}.png", png, "image/png")) for index, png in enumerate(pngs)]}


def encoded(image: Image.Image, kind: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def json_body(text: str) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": "application/json"}}


def pixel_json(value: str) -> dict[str, Any]:
    """A JSON body of one 28×28 image whose every pixel is the literal ``value``."""
    row = "[" + ",".join([value] * 28) + "]"
    return json_body('{"pixels": [[' + ",".join([row] * 28) + "]]}")


def assert_still_answers(client: Any, digit: Digit, url: str = "") -> None:
    response = client.post(f"{url}/predict", **files(digit.png))
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == digit.label


# In this process: routes, answers, refusals


def test_health_names_the_most_accurate_shipped_model_and_models_lists_the_manifest(client: TestClient) -> None:
    manifest = read_manifest()
    best = max(manifest, key=lambda name: manifest[name].test_acc)
    health = client.get("/health").json()
    assert (health["status"], health["model"], health["backend"]) == ("ok", best, "torch")
    assert (health["max_images"], health["max_upload_mb"], health["api_key_required"]) == (MAX_IMAGES, 2, True)
    assert health["uncertain_below"] == manifest[best].uncertain_below  # its answers are flagged below its own
    models = client.get("/models").json()
    assert models["served"] == best
    listed = [(model["name"], model["test_acc"]) for model in models["models"]]
    assert listed == [(name, manifest[name].test_acc) for name in sorted(manifest)]


def test_the_gil_changes_hands_every_200_microseconds_while_the_batcher_runs_and_as_before_after(
    network: Any, confident_digits: list[Digit]
) -> None:
    """The forward thread gets the GIL back from a busy event loop within ``SWITCH_INTERVAL_S``, not Python's
    5 ms; the process's own interval comes back when the batcher stops."""
    classifier = load_classifier(network, "torch")
    digit = confident_digits[0]

    async def serve_one() -> tuple[float, np.ndarray]:
        batcher = DynamicBatcher(classifier, max_batch=64, wait_s=0)
        batcher.start()
        try:
            return sys.getswitchinterval(), await batcher.probabilities(to_mnist(digit.png)[None])
        finally:
            await batcher.stop()

    own = sys.getswitchinterval()
    sys.setswitchinterval(0.003)  # a value of this test's own, that the batcher must give back
    try:
        during, probabilities = asyncio.run(serve_one())
        after = sys.getswitchinterval()
    finally:
        sys.setswitchinterval(own)
    assert during == pytest.approx(SWITCH_INTERVAL_S) and during < 0.001
    assert after == pytest.approx(0.003)
    assert probabilities.argmax() == digit.label


def test_no_answer_shows_where_the_checkpoint_is_on_disk(network: Any, tmp_path: Path) -> None:
    checkpoint = tmp_path / "private" / "runs" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    shutil.copy(resolve_checkpoint(most_accurate()), checkpoint)
    with app_client(network, serve_config(), str(checkpoint)) as client:
        answers = [
            client.get("/health"), client.get("/models"), client.get("/nothing"), client.get("/predict"),
            client.post("/predict", **files(b"not an image")), client.get("/openapi.json"), client.get("/docs"),
        ]  # fmt: skip
    assert answers[0].json()["model"] == answers[1].json()["served"] == "best.ckpt"
    assert [answer for answer in answers if "private" in answer.text or str(REPO) in answer.text] == []


def test_the_page_and_the_docs_come_from_the_app_alone(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="pad"' in page.text and 'id="clear"' in page.text and 'type="file"' in page.text
    static = sorted((REPO / "mnist_cnn" / "serving" / "static").iterdir())
    assert {path.name for path in static} == {"index.html", "page.css", "page.js", "docs.html", "docs.js"}
    for path in static:
        served = client.get(f"/static/{path.name}")
        assert served.status_code == 200 and served.text == path.read_text()
        assert "://" not in served.text  # nothing fetched from elsewhere: the page and the docs work offline
    docs = client.get("/docs")
    assert docs.text == (REPO / "mnist_cnn" / "serving" / "static" / "docs.html").read_text()
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        assert f'"/docs-assets/{asset}"' in docs.text
        served = client.get(f"/docs-assets/{asset}")
        assert served.status_code == 200 and kind in served.headers["content-type"] and len(served.content) > 10_000
    body = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]
    assert set(body["content"]) == {"multipart/form-data", "application/json"}


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    answers = [
        client.get("/"), client.get("/docs"), client.get("/health"), client.get("/static/page.js"),
        client.get("/nothing"), client.post("/predict", headers={"X-API-Key": "wrong"}),
        client.post("/predict", **json_body("{")), client.get("/health", headers={"Host": "elsewhere.example"}),
    ]  # fmt: skip
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_head_answers_every_get_route_without_a_body(client: TestClient) -> None:
    for path in ("/", "/health", "/models", "/docs", "/openapi.json", "/static/page.js", "/docs-assets/swagger-ui.css"):
        head, get = client.head(path), client.get(path)
        assert (head.status_code, head.content) == (200, b""), path
        assert head.headers["content-type"] == get.headers["content-type"]
    assert client.head("/predict").status_code == 405


def test_files_base64_and_pixels_get_the_answers_of_predict_images_in_order(
    client: TestClient, network: Any, confident_digits: list[Digit]
) -> None:
    digits = confident_digits[:5]
    pngs = [digit.png for digit in digits]
    expected = predict_images(network, pngs)

    uploaded = client.post("/predict", **files(*pngs)).json()["predictions"]
    assert [p["label"] for p in uploaded] == [digit.label for digit in digits] == expected.labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in uploaded], expected.probabilities, atol=2e-6)
    for prediction in uploaded:
        ranked = prediction["top_k"]
        assert len(ranked) == 3 and ranked[0] == [prediction["label"], prediction["probability"]]
        assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
        assert sum(prediction["probabilities"]) == pytest.approx(1, abs=1e-4) and "input" not in prediction

    base64s = [base64.b64encode(png).decode() for png in pngs]
    base64s[0] = f"data:image/png;base64,{base64s[0]}"  # as a canvas's toDataURL gives it
    assert client.post("/predict", json={"images": base64s}).json()["predictions"] == uploaded

    pixels = [to_mnist(png) for png in pngs]
    seen = client.post("/predict", json={"pixels": [p.tolist() for p in pixels]}, params={"include_input": "true"})
    answered = seen.json()["predictions"]
    assert [p["input"] for p in answered] == [p.tolist() for p in pixels]
    assert [{k: v for k, v in p.items() if k != "input"} for p in answered] == uploaded

    # Two digits overlaid: answers the model is unsure of, flagged as the library flags them.
    blends = [np.maximum(a, b) for a, b in zip(pixels, pixels[1:] + pixels[:1])]
    answer = client.post("/predict", json={"pixels": [blend.tolist() for blend in blends]}).json()
    flagged = [prediction["uncertain"] for prediction in answer["predictions"]]
    assert flagged == predict_images(network, np.stack(blends)).uncertain.tolist() and any(flagged)
    assert [p["uncertain"] for p in uploaded] == expected.uncertain.tolist() == [False] * len(digits)


def test_the_pages_drawing_as_it_sends_it_is_read_as_its_digit(
    client: TestClient, confident_digits: list[Digit]
) -> None:
    for digit in confident_digits[:10]:  # dark ink on white, an opaque RGBA PNG in a data URL, as the canvas gives
        canvas = encoded(Image.open(io.BytesIO(digit.png)).convert("RGBA"), "PNG")
        data_url = "data:image/png;base64," + base64.b64encode(canvas).decode()
        answer = client.post("/predict", json={"images": [data_url]}).json()["predictions"][0]
        assert answer["label"] == digit.label and not answer["uncertain"]


def _truncated_png(png: bytes) -> bytes:
    return png[: len(png) // 2]


def _deep(depth: int) -> dict[str, Any]:
    return json_body('{"pixels": ' + "[" * depth + "0" + "]" * depth + "}")


GIF = encoded(Image.new("L", (28, 28), 255), "GIF")
TIFF = encoded(Image.new("L", (28, 28), 255), "TIFF")
NOT_READ = "not a readable image file: PNG, JPEG and BMP are read"

BAD_REQUESTS = {  # name: (request arguments, status, part of the error)
    "not an image": ({"files": {"file": ("notes.txt", b"hello, world", "text/plain")}}, 400, NOT_READ),
    "eps": ({"files": {"file": ("digit.eps", EPS, "application/postscript")}}, 400, NOT_READ),
    "gif": ({"files": {"file": ("digit.gif", GIF, "image/gif")}}, 400, NOT_READ),
    "base64 tiff": ({"json": {"images": [base64.b64encode(TIFF).decode()]}}, 400, f"images[0]: {NOT_READ}"),
    "empty body": ({"headers": {"Content-Type": "application/json"}}, 400, "the request body is empty"),
    "empty file": ({"files": {"file": ("empty.png", b"", "image/png")}}, 400, "is empty"),
    "truncated png": (None, 400, "not a readable image file"),
    "wrong content type": ({"content": b"1234", "headers": {"Content-Type": "text/plain"}}, 415, "text/plain is not"),
    "malformed json": (json_body('{"images": ['), 400, "the body is not valid JSON"),
    "json not utf-8": ({"content": b'{"pixels": "\xff"}', "headers": {"Content-Type": "application/json"}},
                       400, "not UTF-8 JSON"),
    "json list": ({"json": [1, 2]}, 400, 'either "images" or "pixels"'),
    "json without images or pixels": ({"json": {"image": []}}, 400, 'either "images" or "pixels"'),
    "images and pixels": ({"json": {"images": [], "pixels": []}}, 400, 'either "images" or "pixels"'),
    "bad base64": ({"json": {"images": ["not base64!"]}}, 400, "images[0] is not valid base64"),
    "base64 of no image": ({"json": {"images": [base64.b64encode(b"text").decode()]}}, 400, "images[0]: not a"),
    "images not strings": ({"json": {"images": [3]}}, 400, "images[0] must be a string"),
    "pixels of the wrong shape": ({"json": {"pixels": [[[0] * 28] * 27]}}, 400, "pixels[0] is not 28 lists of 28"),
    "ragged pixels": ({"json": {"pixels": [[[0] * 28] * 27 + [[0] * 5]]}}, 400, "pixels[0] is not 28 lists of 28"),
    "pixels nested 900 deep": (_deep(900), 400, "pixels[0] is not 28 lists of 28"),
    "pixels nested 10,000 deep": (_deep(10_000), 400, "the JSON is nested too deeply"),
    "pixels over 255": (pixel_json("300"), 400, "0-255: found values from 300 to 300"),
    "a pixel of 2^63": (pixel_json(str(2**63)), 400, f"found values from {2**63} to {2**63}"),
    "a pixel of 2^64": (pixel_json(str(2**64)), 400, "found values that are not numbers, or too large"),
    "a pixel of 5,000 digits": (json_body('{"pixels": [[[' + "9" * 5000 + "]]]}"), 400, "a number too long to be a pixel"),
    "negative pixels": (pixel_json("-1"), 400, "found values from -1 to -1"),
    "fractional pixels": (pixel_json("0.5"), 400, "found fractions"),
    "infinite pixels": (pixel_json("Infinity"), 400, "found values from inf to inf"),
    "text pixels": (pixel_json('"a"'), 400, "not numbers"),
    "null pixels": (pixel_json("null"), 400, "not numbers"),
    "lists for pixels": (pixel_json("[0]"), 400, "not numbers"),
    "too many pixel images": ({"json": {"pixels": [[[0] * 28] * 28] * 17}}, 400, "17 images in one request"),
    "too many pixel images, counted before their shape": (
        {"json": {"pixels": [[[0] * 28] * 28] * 16 + [[[0] * 3]]}}, 400, "17 images in one request"),
    "too many base64 images": ({"json": {"images": ["AA=="] * 17}}, 400, "more than the 16 allowed (max_images)"),
    "too many files": (None, 400, "Too many files"),
    "an image over max_pixels": (None, 400, f"is 5,000 × 4,000 pixels, more than the {MAX_PIXELS:,} allowed"),
    "a PNG of 7,000 × 7,000": (None, 400, f"is 7,000 × 7,000 pixels, more than the {MAX_PIXELS:,} allowed"),
    "an image 1 pixel wide": (files(encoded(Image.new("L", (1, 50)), "PNG")), 400,
                              "the image is 1 × 50 pixels: a digit needs at least 8 pixels a side"),
    "4,300 pixel images": ({"json": {"pixels": [[[0] * 3]] * 4300}}, 400, "4300 images in one request"),
    "images over max_request_pixels": (None, 413, "claim 80,000,000 pixels together, more than the 64,000,000"),
    "body over max_upload_mb": ({"content": b"{" * (3 * 2**20), "headers": {"Content-Type": "application/json"}},
                                413, "3.0 MB, more than the 2 MB allowed (max_upload_mb)"),
    "bad query": ({"params": {"include_input": "maybe"}, "json": {"pixels": []}}, 400, "include_input"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_input_gets_a_4xx_saying_what_was_wrong_and_the_next_request_is_answered(
    case: str, client: TestClient, confident_digits: list[Digit]
) -> None:
    arguments, status, message = BAD_REQUESTS[case]
    if case == "truncated png":
        arguments = files(_truncated_png(confident_digits[0].png))
    elif case == "too many files":
        arguments = files(*[confident_digits[0].png] * 17)
    elif case == "an image over max_pixels":
        arguments = files(decompression_bomb(5000, 4000))  # 20 megapixels claimed in 20 KB
    elif case == "a PNG of 7,000 × 7,000":
        arguments = files(decompression_bomb(7000, 7000))
    elif case == "images over max_request_pixels":
        arguments = files(*[decompression_bomb(4000, 4000)] * 5)  # each allowed, not all five together
    response = client.post("/predict", **arguments)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert_still_answers(client, confident_digits[0])


def test_an_eps_upload_is_refused_without_starting_ghostscript(
    client: TestClient, confident_digits: list[Digit], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # a file that Pillow itself would open, and render with gs
    started = []

    def no_process(*args: Any, **kwargs: Any) -> None:
        started.append(args)
        raise OSError("the test allows no child process")

    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")  # as where Ghostscript is installed
    monkeypatch.setattr(subprocess, "Popen", no_process)
    for arguments in (files(EPS), {"json": {"images": [base64.b64encode(EPS).decode()]}}):
        response = client.post("/predict", **arguments)
        assert response.status_code == 400 and NOT_READ in response.json()["error"]
    assert started == []
    monkeypatch.undo()
    assert_still_answers(client, confident_digits[0])


def test_damaged_png_jpeg_and_bmp_files_get_4xx_never_5xx(client: TestClient, confident_digits: list[Digit]) -> None:
    page = Image.open(io.BytesIO(confident_digits[0].png))
    rng = np.random.default_rng(0)
    statuses = []
    for kind in ("PNG", "JPEG", "BMP"):
        good = encoded(page, kind)
        for cut in (8, 20, 60, len(good) // 3, len(good) - 10):
            statuses.append(client.post("/predict", **files(good[:cut])).status_code)
        for _ in range(20):
            damaged = np.frombuffer(good, dtype=np.uint8).copy()
            damaged[rng.integers(8, len(good), size=4)] = rng.integers(0, 256, size=4)
            statuses.append(client.post("/predict", **files(damaged.tobytes())).status_code)
    assert set(statuses) <= {200, 400} and 400 in statuses
    assert_still_answers(client, confident_digits[0])


def test_only_a_few_small_images_are_decoded_in_the_event_loop(
    network: Any, confident_digits: list[Digit], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded_in = []
    decode = server_module.file_images

    def recorded(*args: Any) -> np.ndarray:
        decoded_in.append(threading.current_thread().name)
        return decode(*args)

    monkeypatch.setattr(server_module, "file_images", recorded)
    digit = Image.fromarray(confident_digits[0].pixels)
    text = PngImagePlugin.PngInfo()
    text.add_text("padding", "".join(np.random.default_rng(0).choice(list("abcdefgh"), 20_000)))
    small, padded = encoded(digit, "PNG"), encoded(digit, "PNG", pnginfo=text)  # 28 × 28 each; padded: > 16 KB
    with app_client(network, serve_config()) as client:
        for body in (files(small), files(padded), files(confident_digits[0].png), files(*[small] * 5)):
            assert client.post("/predict", **body).status_code == 200
    # in the event loop: one small file; in a decoder: over 16 KB, over 128 × 128 pixels (280 × 280), over 4 files
    assert [name.startswith("decode") for name in decoded_in] == [False, True, True, True]


def test_pixels_are_answered_while_every_image_decoder_is_busy(
    network: Any, confident_digits: list[Digit], monkeypatch: pytest.MonkeyPatch
) -> None:
    release, decoding = threading.Event(), threading.Semaphore(0)
    decode = server_module.file_images

    def held(*args: Any) -> np.ndarray:
        decoding.release()
        release.wait(60)
        return decode(*args)

    monkeypatch.setattr(server_module, "file_images", held)
    pixels = json.dumps({"pixels": [to_mnist(confident_digits[0].png).tolist()]})
    with app_client(network, serve_config()) as client:
        images: list[Any] = []
        senders = [
            threading.Thread(target=lambda: images.append(client.post("/predict", **files(confident_digits[0].png))))
            for _ in range(os.cpu_count() or 1)
        ]
        for sender in senders:
            sender.start()
        for _ in senders:
            assert decoding.acquire(timeout=60)  # every decoder thread holds an image
        for body in (pixels, pixels + " " * 2**17):  # read at once, and (over 64 KB) in the parser's thread
            answer = client.post("/predict", **json_body(body))
            assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == confident_digits[0].label
        assert images == []  # the images are still being decoded
        release.set()
        for sender in senders:
            sender.join()
    assert [image.status_code for image in images] == [200] * len(senders)


def test_one_bad_file_refuses_the_whole_multipart_request_naming_it(
    client: TestClient, confident_digits: list[Digit]
) -> None:
    good = confident_digits[0].png
    response = client.post("/predict", **files(good, b"not an image", good))
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"file 2 (digit1.png): {NOT_READ}")


def test_a_request_without_the_right_api_key_gets_401(client: TestClient, confident_digits: list[Digit]) -> None:
    for key in ("", "wrong"):
        response = client.post("/predict", headers={"X-API-Key": key}, **files(confident_digits[0].png))
        assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
    assert client.get("/health", headers={"X-API-Key": ""}).status_code == 200  # only /predict needs the key


def test_unknown_routes_and_methods_answer_json_errors(client: TestClient) -> None:
    missing = client.get("/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "GET /nothing-here: Not Found"}
    assert client.get("/predict").json() == {"error": "GET /predict: Method Not Allowed"}


def test_only_the_allowed_host_names_are_answered(client: TestClient, network: Any) -> None:
    for host in ("127.0.0.1", "127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.2"):  # DNS rebinding: another site's name
        refused = client.get("/health", headers={"Host": host})
        assert refused.status_code == 400, host
        assert f"does not answer for the host '{host}'" in refused.json()["error"]
        assert "allowed_hosts" in refused.json()["error"]
    with app_client(network, serve_config("allowed_hosts=[digits.example.org]")) as named:
        assert named.get("/health", headers={"Host": "digits.example.org:8000"}).status_code == 200
        assert named.get("/health", headers={"Host": "localhost"}).status_code == 400
    with app_client(network, serve_config("allowed_hosts=['*']")) as anyone:
        assert anyone.get("/health", headers={"Host": "attacker.example"}).status_code == 200


def test_an_unforeseen_failure_answers_a_json_500_that_shows_nothing_of_the_server(tmp_path: Path) -> None:
    def broken(pixels: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"cannot read {tmp_path / 'model.onnx'}")

    app = create_app(broken, serve_config(), "lenet5")
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as client:
        response = client.post("/predict", json={"pixels": [[[0] * 28] * 28]})
        assert response.status_code == 500
        assert response.json() == {"error": "POST /predict failed on the server (RuntimeError); it goes on serving"}
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert client.get("/health").status_code == 200


# Real server processes: where the transport matters


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The default server (the most accurate shipped model, torch), with an API key and small limits."""
    env = {"MNIST_CNN_API_KEY": KEY}
    with running_server(f"max_images={MAX_IMAGES}", f"max_upload_mb={MAX_UPLOAD_MB}", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def guarded() -> Iterator[Server]:
    """A server with short head and keep-alive timeouts, a small head size and few connections."""
    limits = ("header_timeout_s=1", "keep_alive_s=1", "max_header_kb=4", "max_connections=20")
    with running_server("ckpt_path=lenet5", *limits) as running:
        yield running


@pytest.fixture()
def http() -> Iterator[requests.Session]:
    with requests.Session() as client:
        client.headers["X-API-Key"] = KEY
        yield client


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def read_all(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:  # closed with data of ours unread: what it sent before is still here
        pass
    return received


def _outcome(process: subprocess.Popen[str]) -> tuple[str, str]:
    """("serving", its address line) once a server started by ``python -m mnist_cnn.serve`` serves, or
    ("failed", its error line) once it has exited 2."""
    assert select.select([process.stdout], [], [], 180)[0], "the server neither served nor failed in 3 minutes"
    line = process.stdout.readline()
    if line:
        return "serving", line
    assert process.wait(timeout=60) == 2
    return "failed", process.stderr.read().strip()


@pytest.mark.slow
def test_of_two_servers_started_on_one_port_one_fails_whatever_the_timing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mnist_cnn.serve", f"port={port}", "ckpt_path=lenet5"]
    started = []
    try:
        for _ in range(2):  # the second starts while the first is still starting or loading its model
            started.append(
                subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            )
            time.sleep(0.3)
        outcomes = sorted(_outcome(process) for process in started)
        error = f"error: cannot listen on 127.0.0.1:{port} (Address already in use): choose another port="
        assert outcomes[0][0] == "failed" and outcomes[0][1].startswith(error), outcomes
        assert outcomes[1][0] == "serving" and outcomes[1][1].startswith(
            f"serving lenet5 (onnx) at http://127.0.0.1:{port}/"
        )
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["model"] == "lenet5"
        after = run_process("mnist_cnn.serve", f"port={port}", "ckpt_path=lenet5", cwd=tmp_path, timeout=120)
        assert (after.returncode, after.stderr.strip().splitlines()) == (2, [outcomes[0][1]])
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["model"] == "lenet5"
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)


@pytest.mark.slow
def test_a_request_head_over_max_header_kb_is_refused_as_it_arrives(guarded: Server) -> None:
    with connect(guarded) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = 0
        try:
            while sent < 100 * 2**20:  # a 100 MB header, unless the server stops it
                connection.sendall(b"a" * 2**16)
                sent += 2**16
        except OSError:  # the server answered and closed the connection
            pass
        answer = read_all(connection)
    assert sent < 100 * 2**20  # refused long before the end of the header
    assert answer.startswith(b"HTTP/1.1 431 ") and b"over the 4 KB allowed (max_header_kb)" in answer
    assert requests.get(f"{guarded.url}/health", timeout=30).status_code == 200


@pytest.mark.slow
def test_slow_request_heads_are_closed_after_header_timeout_s_while_others_are_answered(guarded: Server) -> None:
    silent = [connect(guarded) for _ in range(5)]  # connect and send nothing
    partial = [connect(guarded) for _ in range(5)]  # a head begun and never ended
    for connection in partial:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    trickle = connect(guarded)  # slowloris: a byte now and then, never the end of the head
    for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa":
        if select.select([trickle], [], [], 0.1)[0]:  # the server has answered: it is done with this one
            break
        trickle.sendall(bytes([byte]))
    assert requests.get(f"{guarded.url}/health", timeout=30).status_code == 200  # the others wait on nobody
    for connection in [*silent, *partial, trickle]:
        with connection:
            answer = read_all(connection)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"took over 1 s (header_timeout_s)" in answer


@pytest.mark.slow
def test_an_idle_connection_is_closed_after_keep_alive_s(guarded: Server) -> None:
    with connect(guarded) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_all(connection)  # the answer, then the end of the connection, kept open for keep_alive_s
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"}")


@pytest.mark.slow
def test_connections_over_max_connections_are_answered_503(guarded: Server) -> None:
    held = [connect(guarded) for _ in range(20)]
    try:
        for connection in held:  # each one's head begun, so that the server holds it as a connection
            connection.sendall(b"GET /health HTTP/1.1\r\n")
        assert requests.get(f"{guarded.url}/health", timeout=30).status_code == 503
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.5)  # the server sees them closed
    assert requests.get(f"{guarded.url}/health", timeout=30).status_code == 200


def _chunks(size: int) -> Any:
    for _ in range(size // 2**16):
        yield b"x" * 2**16


@pytest.mark.slow
def test_a_chunked_body_over_max_upload_mb_is_refused_as_it_arrives(
    server: Server, http: requests.Session, confident_digits: list[Digit]
) -> None:
    headers = {"Content-Type": "application/json"}
    response = http.post(f"{server.url}/predict", data=_chunks(3 * 2**20), headers=headers, timeout=60)
    assert response.status_code == 413 and "over the 2 MB allowed (max_upload_mb)" in response.json()["error"]
    assert_still_answers(http, confident_digits[0], server.url)


@pytest.mark.slow
def test_a_decompression_bomb_is_refused_from_its_header(
    server: Server, http: requests.Session, confident_digits: list[Digit]
) -> None:
    bomb = decompression_bomb()  # 30,000 × 30,000 pixels: 900 MB once decoded
    assert len(bomb) < MAX_UPLOAD_MB * 2**20
    for arguments in (files(bomb), {"json": {"images": [base64.b64encode(bomb).decode()]}}):
        response = http.post(f"{server.url}/predict", timeout=60, **arguments)
        assert response.status_code == 400
        expected = f"claims 900,000,000 pixels, more than the {MAX_PIXELS:,} allowed (max_pixels)"
        assert expected in response.json()["error"]
    assert_still_answers(http, confident_digits[0], server.url)


BAD_UNDER_LOAD = [
    {"files": {"file": ("notes.txt", b"not an image", "text/plain")}},
    {"data": b"{", "headers": {"Content-Type": "application/json"}},
    {"json": {"images": ["%%%"]}},
    {"data": b"1234", "headers": {"Content-Type": "text/plain"}},
    {"json": {"pixels": [[[999] * 28] * 28]}},
]


@pytest.mark.slow
def test_2000_requests_from_32_clients_a_tenth_bad_no_5xx_no_drop_right_labels(
    server: Server, confident_digits: list[Digit]
) -> None:
    total, clients = 2000, 32
    warm_up = 4 * clients
    before_health = requests.get(f"{server.url}/health").json()

    def send(index: int, http: requests.Session) -> tuple[int, int, Any]:
        if index % 10 == 0:
            response = http.post(
                f"{server.url}/predict", timeout=60, **BAD_UNDER_LOAD[index // 10 % len(BAD_UNDER_LOAD)]
            )
            return index, response.status_code, response.json()["error"]
        digit = confident_digits[index % len(confident_digits)]
        response = http.post(f"{server.url}/predict", timeout=60, **files(digit.png))
        return index, response.status_code, response.json()["predictions"][0]["label"] if response.ok else response.text

    def client_loop(number: int, indices: range) -> list[tuple[int, int, Any]]:
        with requests.Session() as http:
            http.headers["X-API-Key"] = KEY
            return [send(index, http) for index in indices if index % clients == number]

    with ThreadPoolExecutor(clients) as pool:  # warm-up first: its answers are counted too
        list(pool.map(client_loop, range(clients), [range(warm_up)] * clients))
        parts = pool.map(client_loop, range(clients), [range(total)] * clients)
        answers = [answer for part in parts for answer in part]

    assert len(answers) == total  # a dropped connection would have raised in its client
    statuses = [status for _, status, _ in answers]
    assert max(statuses) < 500
    bad = [answer for answer in answers if answer[0] % 10 == 0]
    assert len(bad) == total // 10 and all(400 <= status < 500 for _, status, _ in bad)
    expected = [(200, confident_digits[index % len(confident_digits)].label) for index in range(total)]
    assert [answer for answer in answers if answer[0] % 10 and answer[1:] != expected[answer[0]]] == []
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
    pytest.importorskip("onnxruntime", reason="backend=onnx needs the export extra")
    digits = confident_digits[:4]
    expected = predict_images(load_network(resolve_checkpoint("lenet5")), [digit.png for digit in digits])
    with running_server("ckpt_path=lenet5", "backend=onnx") as server:
        health = requests.get(f"{server.url}/health").json()
        answer = requests.post(f"{server.url}/predict", **files(*(digit.png for digit in digits))).json()
    assert (health["model"], health["backend"]) == ("lenet5", "onnx")
    predictions = answer["predictions"]
    assert [p["label"] for p in predictions] == expected.labels.tolist()
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected.probabilities, atol=1e-4)


def test_serving_never_imports_lightning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with refusing_imports("lightning") as asked:
        server = importlib.import_module("mnist_cnn.serving.server")  # the command's, imported anew
        monkeypatch.setattr(server, "run", lambda app, listening, config: listening.close())  # built, not served
        result = run_command("mnist_cnn.serve", "ckpt_path=lenet5", "port=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert asked == [] and result.stdout.startswith("serving lenet5 (onnx) at http://127.0.0.1:")


@pytest.mark.slow
def test_a_taken_port_a_missing_checkpoint_and_an_open_host_fail_with_one_line_before_loading(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for overrides, message in (
            ((f"port={port}",), f"cannot listen on 127.0.0.1:{port} (Address already in use): choose another port="),
            (("ckpt_path=nothing.ckpt",), "ckpt_path=nothing.ckpt: no such file or directory, nor a shipped model"),
            (
                ("host=0.0.0.0",),
                "host=0.0.0.0 answers for any name of this machine: list the names clients use in allowed_hosts",
            ),
        ):  # the options' ranges are checked for every command in test_config.py
            result = run_process("mnist_cnn.serve", *overrides, cwd=tmp_path, timeout=120)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


@pytest.mark.slow
@pytest.mark.parametrize(
    ("package", "overrides", "extra"),
    [("fastapi", (), "serve"), ("swagger_ui_bundle", (), "serve"), ("onnxruntime", ("backend=onnx",), "export")],
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

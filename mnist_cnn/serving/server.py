"""The HTTP app that serves a classifier: the drawing page at ``/``, ``POST /predict``, ``/health``, ``/models``
and the OpenAPI docs at ``/docs``, on FastAPI, run by uvicorn in one process.

Every refusal is a 4xx answer ``{"error": "..."}`` that says what was wrong, and anything unforeseen a 500 that
says no more than that; the server goes on answering. No answer shows a path on the server's disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import os
import signal
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from swagger_ui_bundle import swagger_ui_path

from mnist_cnn.config import ServeConfig
from mnist_cnn.inference.backends import Classifier
from mnist_cnn.inference.classify import UNCERTAIN_BELOW, Predictions
from mnist_cnn.serving.api_schema import PREDICT_BODY, ErrorAnswer, PredictAnswer
from mnist_cnn.serving.batching import DynamicBatcher
from mnist_cnn.serving.limits import SECURITY_HEADERS, AllowedHosts, BodyLimit, SecurityHeaders
from mnist_cnn.serving.protocol import GuardedHttpTools
from mnist_cnn.serving.uploads import FORMS, BadRequest, Files, claimed_pixels, file_images, read_json
from mnist_cnn.weights.manifest import read_manifest

STATIC_DIR = Path(__file__).resolve().parent / "static"
SHUTDOWN_GRACE_S = 30  # after SIGTERM, how long requests in flight may take before they are cancelled
LOCALHOST = ("localhost", "127.0.0.1", "[::1]")
INLINE_JSON_BYTES = 64 * 1024  # a JSON body up to this size (a canvas drawing: a few KB) is read in the event loop
# Image files decoded in the event loop: at most this many, of this many bytes together, claiming this many pixels
# (a bound on the bytes bounds the work their headers can ask of the decoder; the pixels, the decoding's)
INLINE_FILES, INLINE_FILE_BYTES, INLINE_PIXELS = 4, 16 * 1024, 128 * 128


def answers(
    pixels: np.ndarray, probabilities: np.ndarray, top_k: int, include_input: bool, uncertain_below: float
) -> list[dict[str, Any]]:
    """One JSON object per image: its label, probability, whether that is too low to trust (below
    ``uncertain_below``), the ten probabilities, the top k (and its pixels)."""
    predicted = Predictions(probabilities.argmax(axis=1), probabilities, uncertain_below)
    digits, _ = predicted.top_k(top_k)
    rounded = np.round(probabilities.astype(np.float64), 6).tolist()
    predictions = []
    for index, (row, top_digits, uncertain) in enumerate(zip(rounded, digits.tolist(), predicted.uncertain.tolist())):
        prediction = {
            "label": top_digits[0],
            "probability": row[top_digits[0]],
            "uncertain": uncertain,
            "probabilities": row,
            "top_k": [[digit, row[digit]] for digit in top_digits],
        }
        if include_input:
            prediction["input"] = pixels[index].tolist()
        predictions.append(prediction)
    return predictions


class Workers:
    """The threads that turn request bodies into pixels: ``decoders`` decode image files, one thread per core (that
    keeps the cores busy, and the memory flat: each thread that decodes keeps its own allocator arena, and
    Starlette's default pool has 40 threads); ``parser`` reads JSON and pixel lists, so that a request of pixels
    never waits behind image decoding."""

    def __init__(self) -> None:
        self.decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="decode")
        self.parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    def shutdown(self) -> None:
        self.decoders.shutdown()
        self.parser.shutdown()


async def read_pixels(request: Request, config: ServeConfig, workers: Workers) -> np.ndarray:
    """uint8 (N, 28, 28) of a ``/predict`` request's images: small bodies and a few small images read at once,
    the rest in the ``workers``' threads."""
    loop = asyncio.get_running_loop()
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        raise BadRequest(f"the request body is empty: {FORMS}")
    if kind == "multipart/form-data":
        try:
            async with request.form(max_files=config.max_images, max_fields=config.max_images) as form:
                uploads = form.getlist("file")
                if not uploads:
                    raise BadRequest(f'the form has no field named "file": {FORMS}')
                if any(isinstance(upload, str) for upload in uploads):
                    raise BadRequest('"file" fields must be files (with a filename), not text')
                files = [(f"file {n} ({upload.filename})", await upload.read()) for n, upload in enumerate(uploads, 1)]
        except HTTPException as error:  # Starlette's answer to a malformed form
            raise BadRequest(f"cannot read the multipart form: {error.detail}") from None
    elif kind == "application/json":
        body = await request.body()
        if not body:
            raise BadRequest(f"the request body is empty: {FORMS}")
        if len(body) <= INLINE_JSON_BYTES:  # read at once: a thread costs more than reading a small body
            read = read_json(body, config.max_images)
        else:
            read = await loop.run_in_executor(workers.parser, read_json, body, config.max_images)
        if isinstance(read, np.ndarray):
            return read
        files = read
    else:
        raise BadRequest(f"Content-Type {kind or '(none)'} is not accepted: {FORMS}", status=415)
    if len(files) > INLINE_FILES or sum(len(data) for _, data in files) > INLINE_FILE_BYTES:
        return await loop.run_in_executor(workers.decoders, checked_images, files, config)
    # a few small files (a 28 × 28 PNG, the page's drawing): their headers are read at once, and if they claim few
    # pixels, so are they: a thread costs more than decoding them
    if claimed_pixels(files, config.max_pixels, config.max_request_pixels) <= INLINE_PIXELS:
        return file_images(files, config.max_pixels)
    return await loop.run_in_executor(workers.decoders, file_images, files, config.max_pixels)


def checked_images(files: Files, config: ServeConfig) -> np.ndarray:
    """uint8 (N, 28, 28) of image files, their sizes checked from their headers first."""
    claimed_pixels(files, config.max_pixels, config.max_request_pixels)
    return file_images(files, config.max_pixels)


def allowed_hosts(config: ServeConfig) -> list[str]:
    """The Host names answered: ``allowed_hosts``, or else the bound address and localhost's names."""
    if config.allowed_hosts:
        return list(config.allowed_hosts)
    return [f"[{config.host}]" if ":" in config.host else config.host, *LOCALHOST]


def create_app(
    classifier: Classifier, config: ServeConfig, model: str, uncertain_below: float = UNCERTAIN_BELOW
) -> FastAPI:
    """The app serving ``classifier`` (the model named ``model``, whose answers below ``uncertain_below`` are
    flagged uncertain) as ``config`` says."""
    batcher = DynamicBatcher(classifier, config.max_batch_size, config.batch_wait_ms / 1000)
    workers = Workers()
    served = Path(model).name  # a checkpoint file's or run directory's name: never where it is on this disk

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        workers.shutdown()

    app = FastAPI(
        title="mnist_cnn",
        summary="Handwritten digit classification: draw a digit at /, or POST images to /predict.",
        lifespan=lifespan,
        docs_url=None,  # /docs below: Swagger UI from this server, not from a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=int(config.max_upload_mb * 2**20))
    app.add_middleware(AllowedHosts, hosts=allowed_hosts(config))
    app.add_middleware(SecurityHeaders)  # the outermost: on every answer, refusals included
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="needed when the server has an api_key")

    async def check_key(key: str | None = Depends(key_header)) -> None:  # async: no thread for a comparison
        if config.api_key and not (key and hmac.compare_digest(key.encode(), config.api_key.encode())):
            raise BadRequest("this server needs its API key in the X-API-Key header; it was missing or wrong", 401)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC_DIR / "docs.html")

    @app.get("/health", summary="The model served, the server's limits and how requests were batched")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": served,
            "backend": config.backend,
            "max_batch_size": config.max_batch_size,
            "max_images": config.max_images,
            "max_upload_mb": config.max_upload_mb,
            "api_key_required": bool(config.api_key),
            "uncertain_below": uncertain_below,
            "requests_answered": batcher.requests,
            "forward_passes": batcher.passes,  # fewer than requests: concurrent requests shared passes
        }

    @app.get("/models", summary="The shipped models and their measured figures")
    async def models() -> dict[str, Any]:
        shipped = [{"name": name, **dataclasses.asdict(info)} for name, info in sorted(read_manifest().items())]
        return {"served": served, "models": shipped}

    @app.post(
        "/predict",
        summary="Classify digit images",
        description=f"One prediction per image, in the order sent. To {FORMS}.",
        dependencies=[Depends(check_key)],
        responses={200: {"model": PredictAnswer}, "4XX": {"model": ErrorAnswer}},
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(request: Request, include_input: bool = False) -> JSONResponse:
        pixels = await read_pixels(request, config, workers)
        probabilities = await batcher.probabilities(pixels)
        predictions = answers(pixels, probabilities, config.top_k, include_input, uncertain_below)
        return JSONResponse({"predictions": predictions})

    @app.exception_handler(BadRequest)
    async def refused(request: Request, error: BadRequest) -> JSONResponse:
        return JSONResponse({"error": error.message}, status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{request.method} {request.url.path}: {error.detail}"}, error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors())
        return JSONResponse({"error": problems}, status_code=400)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:  # logged by uvicorn, shown to no client
        message = (
            f"{request.method} {request.url.path} failed on the server ({type(error).__name__}); it goes on serving"
        )
        # Starlette answers this from its outermost middleware, outside SecurityHeaders: the headers go on here
        headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
        return JSONResponse({"error": message}, status_code=500, headers=headers)

    for route in list(app.routes):  # HEAD wherever GET: the same answer without its body
        if isinstance(route, APIRoute) and "GET" in route.methods:
            app.add_api_route(route.path, route.endpoint, methods=["HEAD"], include_in_schema=False)
    return app


def run(app: FastAPI, listening: socket.socket, config: ServeConfig) -> None:
    """Serve ``app`` on the listening socket with ``config``'s limits until SIGTERM or Ctrl+C: then stop accepting,
    answer the requests in flight (for up to ``SHUTDOWN_GRACE_S``) and return."""
    import uvicorn

    # uvicorn raises the signal that stopped it again once it has shut down; these handlers take it, so the
    # command ends with status 0 after a clean shutdown instead of dying of the signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: None)
    protocol = functools.partial(
        GuardedHttpTools, max_head_bytes=int(config.max_header_kb * 1024), head_timeout_s=config.header_timeout_s
    )
    server = uvicorn.Config(
        app,
        http=protocol,  # type: ignore[arg-type]  (uvicorn takes any protocol class; a partial builds one)
        ws="none",
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # no proxy is assumed: X-Forwarded-* headers are not believed
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        timeout_keep_alive=config.keep_alive_s,
        limit_concurrency=config.max_connections,
        server_header=False,
    )
    uvicorn.Server(server).run(sockets=[listening])

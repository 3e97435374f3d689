"""The HTTP app that serves a classifier: the drawing page at ``/``, ``POST /predict``, ``/health``, ``/models``
and the OpenAPI docs at ``/docs``, on FastAPI, run by uvicorn in one process.

Every refusal is a 4xx answer ``{"error": "..."}`` that says what was wrong; the server goes on answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import os
import signal
import socket
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from mnist_cnn.config import ServeConfig
from mnist_cnn.inference.api_schema import PREDICT_BODY, ErrorAnswer, PredictAnswer
from mnist_cnn.inference.backends import Classifier
from mnist_cnn.inference.batching import DynamicBatcher
from mnist_cnn.inference.classify import UNCERTAIN_BELOW, Predictions
from mnist_cnn.inference.limits import BodyLimit
from mnist_cnn.inference.uploads import FORMS, BadRequest, file_images, json_images
from mnist_cnn.weights.manifest import read_manifest

STATIC_DIR = Path(__file__).resolve().parent / "static"
SHUTDOWN_GRACE_S = 30  # after SIGTERM, how long requests in flight may take before they are cancelled


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


async def read_pixels(request: Request, config: ServeConfig, decoders: Executor) -> np.ndarray:
    """uint8 (N, 28, 28) of a ``/predict`` request's images, decoded by one of the ``decoders`` threads."""
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
        return await loop.run_in_executor(decoders, file_images, files, config.max_pixels)
    if kind == "application/json":
        body = await request.body()
        if not body:
            raise BadRequest(f"the request body is empty: {FORMS}")
        return await loop.run_in_executor(decoders, json_images, body, config.max_images, config.max_pixels)
    raise BadRequest(f"Content-Type {kind or '(none)'} is not accepted: {FORMS}", status=415)


def create_app(
    classifier: Classifier, config: ServeConfig, model: str, uncertain_below: float = UNCERTAIN_BELOW
) -> FastAPI:
    """The app serving ``classifier`` (the model named ``model``, whose answers below ``uncertain_below`` are
    flagged uncertain) as ``config`` says."""
    batcher = DynamicBatcher(classifier, config.max_batch_size, config.batch_wait_ms / 1000)
    # Decoding images is CPU work: one thread per core keeps the cores busy, and the memory flat (each thread
    # that decodes keeps its own allocator arena, and Starlette's default pool has 40 threads).
    decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="decode")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        decoders.shutdown()

    app = FastAPI(
        title="mnist_cnn",
        summary="Handwritten digit classification: draw a digit at /, or POST images to /predict.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=int(config.max_upload_mb * 2**20))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="needed when the server has an api_key")

    def check_key(key: str | None = Depends(key_header)) -> None:
        if config.api_key and not (key and hmac.compare_digest(key.encode(), config.api_key.encode())):
            raise BadRequest("this server needs its API key in the X-API-Key header; it was missing or wrong", 401)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health", summary="The model served, the server's limits and how requests were batched")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model,
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
        return {"served": model, "models": shipped}

    @app.post(
        "/predict",
        summary="Classify digit images",
        description=f"One prediction per image, in the order sent. To {FORMS}.",
        dependencies=[Depends(check_key)],
        responses={200: {"model": PredictAnswer}, "4XX": {"model": ErrorAnswer}},
        openapi_extra={"requestBody": PREDICT_BODY},
    )
    async def predict(request: Request, include_input: bool = False) -> JSONResponse:
        pixels = await read_pixels(request, config, decoders)
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

    return app


def run(app: FastAPI, listening: socket.socket) -> None:
    """Serve ``app`` on the bound socket ``listening`` until SIGTERM or Ctrl+C: then stop accepting, answer the
    requests in flight (for up to ``SHUTDOWN_GRACE_S``) and return."""
    import uvicorn

    # uvicorn raises the signal that stopped it again once it has shut down; these handlers take it, so the
    # command ends with status 0 after a clean shutdown instead of dying of the signal.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda *_: None)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    uvicorn.Server(config).run(sockets=[listening])

"""The request body limit: a body over ``max_bytes`` is refused (413) before it is read whole.

Written as plain ASGI middleware because neither uvicorn nor FastAPI limits request bodies. A declared
``Content-Length`` over the limit is answered at once, before any of the body is read; a body without one
(chunked) is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_cnn.inference.uploads import BadRequest


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def too_large(self, size: int | None = None) -> BadRequest:
        body = f"{size / 2**20:.1f} MB, more than" if size is not None else "over"
        limit = f"{self.max_bytes / 2**20:g} MB"
        return BadRequest(f"the request body is {body} the {limit} allowed (max_upload_mb)", status=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            refusal = self.too_large(int(declared))
            response = JSONResponse({"error": refusal.message}, status_code=refusal.status)
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self.too_large()
            return message

        await self.app(scope, counted_receive, send)

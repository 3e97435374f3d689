"""The HTTP guards around the app: the request body limit, the Host allow-list and the headers every answer
carries. Plain ASGI middleware (a few lines each, and cheaper per request than Starlette's BaseHTTPMiddleware).

- ``BodyLimit``: a body over ``max_bytes`` is refused (413) before it is read whole; neither uvicorn nor FastAPI
  limits request bodies. A declared ``Content-Length`` over the limit is answered at once, before any of the body
  is read; a body without one (chunked) is counted as it arrives and refused as soon as it passes the limit.
- ``AllowedHosts``: a request whose Host header names none of the allowed hosts is refused (400), so that a web page
  on another site cannot read the answers through DNS rebinding. Starlette's ``TrustedHostMiddleware`` does the same
  check but answers in plain text, without saying how to allow a name.
- ``SecurityHeaders``: the Content-Security-Policy (only this server's own scripts, styles and connections; no
  framing), ``X-Content-Type-Options: nosniff`` and no referrer, on every answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mnist_cnn.serving.uploads import BadRequest

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers without CSP level 2
    (b"referrer-policy", b"no-referrer"),
]


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
            await refuse(self.too_large(int(declared)), scope, receive, send)
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


class AllowedHosts:
    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app, self.hosts = app, {host.lower() for host in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "*" not in self.hosts:
            named = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            host = named if named.endswith("]") else named.rpartition(":")[0] or named  # without its port
            if host not in self.hosts:
                refusal = BadRequest(
                    f"this server does not answer for the host {named or '(none)'!r}: ask for one of "
                    f"{', '.join(sorted(self.hosts))}, or start it with that name in allowed_hosts"
                )
                await refuse(refusal, scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def refuse(refusal: BadRequest, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer ``refusal`` as the app would: ``{"error": ...}`` with its status."""
    await JSONResponse({"error": refusal.message}, status_code=refusal.status)(scope, receive, send)

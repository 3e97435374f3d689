"""uvicorn's HTTP protocol (httptools) with two limits on a request's head (its request line and headers): its
size, and how long it may take to arrive.

Written here because uvicorn has neither for httptools (h11's size limit comes with a parser several times slower,
and neither has a header timeout): without them one connection can send a 100 MB header, and a few hundred can hold
the server's connections open by sending a byte now and then (slowloris). A head is counted from the first byte of
its connection or request to its last header; one over ``max_head_bytes`` (give or take one read of 64 KB) is
answered 431, one slower than ``head_timeout_s`` 408, each closing the connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpTools(HttpToolsProtocol):
    def __init__(self, *args: Any, max_head_bytes: int, head_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes, self.head_timeout_s = max_head_bytes, head_timeout_s
        self.head_bytes = 0
        self.head_deadline: asyncio.TimerHandle | None = None  # set while a head is awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_deadline is None:  # the next request on a kept-alive connection
            self._await_head()

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        awaiting = self.head_deadline is not None
        super().data_received(data)
        if awaiting and self.head_deadline is not None:  # all of this data went into a head still incomplete
            self.head_bytes += len(data)
            if self.head_bytes > self.max_head_bytes:
                limit = f"{self.max_head_bytes / 1024:g} KB"
                self._refuse(431, f"the request line and headers are over the {limit} allowed (max_header_kb)")

    def _await_head(self) -> None:
        self.head_bytes = 0
        self.head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _head_done(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        self._refuse(408, f"the request line and headers took over {self.head_timeout_s:g} s (header_timeout_s)")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``{"error": message}`` with ``status`` and close the connection."""
        self._head_done()
        if self.transport.is_closing():
            return
        body = json.dumps({"error": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, REASONS[status], len(body), body)
        )
        self.transport.close()

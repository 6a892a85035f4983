"""Every request body is read whole before the application sees the request: within a size cap, within time
limits, and within a budget of bytes buffered across all requests.

So nothing downstream (the key check, a database connection, a worker thread) ever waits on a client: a client
that stalls or trickles its body is cut off with 408 once it goes quiet for ``idle_timeout`` seconds or falls below
``min_bytes_per_second`` after a grace period, and it has held nothing but its own socket meanwhile.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencustomvision.api.errors import AnsweringMiddleware, ErrorSender, send_error
from opencustomvision.config import Settings


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message


class _BufferBudget:
    """Bytes of request bodies held in memory at once, across requests; a reservation waits for room briefly."""

    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self.used = 0
        self._changed = asyncio.Condition()

    async def reserve(self, amount: int) -> int:
        amount = min(amount, self.capacity)  # a body larger than the whole budget waits until it has it all
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: self.used + amount <= self.capacity), self.wait_seconds)
            except TimeoutError:
                raise _Refused(503, "ErrorUnknown",
                               "The server is receiving as many request bodies as it may hold at once; retry shortly.") from None
            self.used += amount
        return amount

    async def release(self, amount: int) -> None:
        async with self._changed:
            self.used -= amount
            self._changed.notify_all()


def body_limits(settings: Settings) -> dict[str, float]:
    """The limits RequestBodyMiddleware enforces, the same in every room."""
    return {"max_bytes": settings.max_request_bytes, "idle_timeout": settings.body_idle_timeout_seconds,
            "min_bytes_per_second": settings.body_min_bytes_per_second}


class RequestBodyMiddleware(AnsweringMiddleware):
    """``skip``: rooms that read their own bodies (Scenario's /v1); ``send``: how refusals are written."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, idle_timeout: float = 15.0, min_bytes_per_second: float = 16384,
                 rate_grace_seconds: float = 30.0, max_buffered_bytes: int = 2 << 30, buffer_wait_seconds: float = 30.0,
                 skip: tuple[str, ...] = (), send: ErrorSender = send_error) -> None:
        super().__init__(app, skip=skip, send=send)
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.min_bytes_per_second = min_bytes_per_second
        self.rate_grace_seconds = rate_grace_seconds
        self.max_buffered_bytes = max_buffered_bytes
        self.buffer_wait_seconds = buffer_wait_seconds
        self._budget: _BufferBudget | None = None  # made in the server's event loop, at the first request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.passes_through(scope):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, _too_large(self.max_bytes))
            return
        expected = int(declared) if declared is not None and declared.isdigit() else (self.max_bytes if chunked else 0)
        if expected == 0:
            await self.app(scope, receive, send)
            return
        if self._budget is None:
            self._budget = _BufferBudget(self.max_buffered_bytes, self.buffer_wait_seconds)
        reserved = 0
        try:
            reserved = await self._budget.reserve(expected)
            body = await self._read(receive)
        except _Refused as refusal:
            if reserved:
                await self._budget.release(reserved)
            await self._refuse(send, refusal)
            return
        await self._budget.release(reserved)
        await self.app(scope, _replaying(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        received = 0
        started = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout)
            except TimeoutError:
                raise _Refused(408, "BadRequest", f"The request body stopped arriving for {self.idle_timeout:.0f} s.") from None
            if message["type"] == "http.disconnect":
                raise _Refused(400, "BadRequest", "The client went away before sending the whole body.")
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                raise _too_large(self.max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            elapsed = time.monotonic() - started
            if elapsed > self.rate_grace_seconds and received / elapsed < self.min_bytes_per_second:
                raise _Refused(408, "BadRequest",
                               f"The request body arrives slower than {self.min_bytes_per_second:.0f} bytes a second.")

    async def _refuse(self, send: Send, refusal: _Refused) -> None:
        # The rest of a refused body is never read: the connection closes after the answer.
        await self.send_error(send, refusal.status, refusal.code, refusal.message, close=True)


def _too_large(max_bytes: int) -> _Refused:
    return _Refused(413, "BadRequestImageSizeBytes", f"The request body is larger than {max_bytes} bytes.")


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The buffered body as one message, then whatever the client sends next (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay

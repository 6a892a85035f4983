"""A cap on request bodies, so one client cannot exhaust the server's memory or disk."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencustomvision.api.errors import AnsweringMiddleware, ErrorSender, TrackedSend, send_error


class _BodyTooLarge(Exception):
    pass


class BodySizeLimitMiddleware(AnsweringMiddleware):
    def __init__(self, app: ASGIApp, max_bytes: int, *, skip: tuple[str, ...] = (), send: ErrorSender = send_error) -> None:
        super().__init__(app, skip=skip, send=send)
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.passes_through(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, counting_receive, tracked)
        except _BodyTooLarge:
            if not tracked.started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await self.send_error(send, 413, "BadRequestImageSizeBytes", f"The request body is larger than {self.max_bytes} bytes.")

"""CustomVisionError answers: the spec's code in the body, the HTTP status a client expects."""

from __future__ import annotations

import json
import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencustomvision.api.negotiation import render
from opencustomvision.api.schemas import CustomVisionError
from opencustomvision.api.versions import documented_code
from opencustomvision.domain.errors import DomainError

logger = logging.getLogger(__name__)

_STATUS_BY_EXACT_CODE = {
    "UnsupportedMediaType": 415,
    "NotFoundApimSubscription": 401,
    "BadRequestNotSupported": 501,
}
_STATUS_BY_PREFIX = (("BadRequest", 400), ("Forbidden", 403), ("NotFound", 404), ("Conflict", 409))


def status_for(code: str) -> int:
    if code in _STATUS_BY_EXACT_CODE:
        return _STATUS_BY_EXACT_CODE[code]
    for prefix, status in _STATUS_BY_PREFIX:
        if code.startswith(prefix):
            return status
    return 500


def error_response(request: Request, code: str, message: str, status: int | None = None) -> Response:
    """The status follows ``code``; the body names it as the caller's version of the spec does."""
    error = CustomVisionError(code=documented_code(request, code), message=message)
    return render(request, error, status=status or status_for(code))


async def domain_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    return error_response(request, error.code, error.message)


def _describe(errors: list) -> str:  # type: ignore[type-arg]
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{location}: {error.get('msg')}" if location else str(error.get("msg")))
    return "; ".join(parts)


async def validation_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, (RequestValidationError, ValidationError))
    return error_response(request, "BadRequest", f"Invalid request: {_describe(error.errors())}")


async def decode_busy_handler(request: Request, error: Exception) -> Response:
    response = error_response(request, "ErrorFeaturizationQueueTimeout",
                              "The server is decoding as many images as its memory budget allows; retry in a few seconds.", 503)
    response.headers["Retry-After"] = "5"
    return response


async def database_unavailable_handler(request: Request, error: Exception) -> Response:
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
    response = error_response(request, "ErrorUnknown", "The database is unavailable right now; retry shortly.", 503)
    response.headers["Retry-After"] = "5"
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the first route's)."""
    return [method for method in _METHODS
            if any(route.matches(dict(request.scope, method=method))[0] == Match.FULL for route in request.app.router.routes)]


async def http_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        return error_response(request, "NotFound", f"No operation at {request.url.path}.")
    if error.status_code == 405:
        allowed = _allowed_methods(request)
        response = error_response(request, "BadRequestNotSupported",
                                  f"{request.method} is not supported on {request.url.path}; use {', '.join(allowed)}.", 405)
        response.headers["Allow"] = ", ".join(allowed)  # RFC 9110: a 405 says which methods the resource has
        return response
    return error_response(request, "BadRequest", str(error.detail), error.status_code)


class TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started, so a middleware knows if it may still answer."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def send_error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """A CustomVisionError answered straight over ASGI, for middleware that runs outside the routes."""
    body = json.dumps({"code": code, "message": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class UnexpectedErrorMiddleware:
    """Answers a bug with 500 ErrorUnknown and keeps the connection usable.

    Starlette's own catch-all re-raises after answering, which makes the server drop the
    keep-alive connection; clients then fail their next request with a reset.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if tracked.started:
                raise
            await send_error(send, 500, "ErrorUnknown", "The server failed to handle this request.")

"""CustomVisionError answers: the spec's code in the body, the HTTP status a client expects."""

from __future__ import annotations

import json
import logging
from typing import Protocol

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SqlAlchemyTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opencustomvision.api.negotiation import render
from opencustomvision.api.schemas import CustomVisionError
from opencustomvision.domain.errors import DomainError
from opencustomvision.imaging.budget import DecodeBusy

logger = logging.getLogger(__name__)

_STATUS_BY_EXACT_CODE = {
    "UnsupportedMediaType": 415,
    "NotFoundApimSubscription": 401,
    "BadRequestNotSupported": 501,
    # An unknown export platform is the caller's mistake, whatever the code's prefix suggests.
    "ErrorExporterInvalidPlatform": 400,
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
    return render(request, CustomVisionError(code=code, message=message), status=status or status_for(code))


@dataclass(frozen=True)
class ApiError:
    """What an exception means for a client, whichever room (Custom Vision, Scenario) renders it."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


# Each room turns an ApiError into its own error body.
Renderer = Callable[[Request, ApiError], Response]
_RETRY = {"Retry-After": "5"}


def describe_validation_errors(errors: list) -> str:  # type: ignore[type-arg]
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{location}: {error.get('msg')}" if location else str(error.get("msg")))
    return "; ".join(parts)


def _domain_error(request: Request, error: Exception) -> ApiError:
    assert isinstance(error, DomainError)
    return ApiError(status_for(error.code), error.code, error.message)


def _validation_error(request: Request, error: Exception) -> ApiError:
    assert isinstance(error, (RequestValidationError, ValidationError))
    return ApiError(400, "BadRequest", f"Invalid request: {describe_validation_errors(error.errors())}")


def _decode_busy(request: Request, error: Exception) -> ApiError:
    return ApiError(503, "ErrorFeaturizationQueueTimeout",
                    "The server is decoding as many images as its memory budget allows; retry in a few seconds.", _RETRY)


def _database_unavailable(request: Request, error: Exception) -> ApiError:
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, error)
    return ApiError(503, "ErrorUnknown", "The database is unavailable right now; retry shortly.", _RETRY)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the first route's)."""
    return [method for method in _METHODS
            if any(route.matches(dict(request.scope, method=method))[0] == Match.FULL for route in request.app.router.routes)]


_ANY_ID = "00000000-0000-0000-0000-000000000000"


def _malformed_id(request: Request) -> str | None:
    """The path segment that, were it a GUID, would make this path an operation's (ids are GUID-typed in the
    routes, so ``/projects/import`` never reaches UpdateProject); None if the path is simply unknown."""
    segments = request.scope.get("path", "").split("/")
    for index, segment in enumerate(segments):
        if not segment:
            continue
        probe = dict(request.scope, path="/".join([*segments[:index], _ANY_ID, *segments[index + 1:]]))
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            return segment
    return None


def _http_error(request: Request, error: Exception) -> ApiError:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        malformed = _malformed_id(request)
        if malformed is not None:
            return ApiError(400, "BadRequest", f"'{malformed}' is not a valid id (a GUID).")
        return ApiError(404, "NotFound", f"No operation at {request.url.path}.")
    if error.status_code == 405:
        allowed = _allowed_methods(request)
        # RFC 9110: a 405 says which methods the resource has.
        return ApiError(405, "BadRequestNotSupported",
                        f"{request.method} is not supported on {request.url.path}; use {', '.join(allowed)}.",
                        {"Allow": ", ".join(allowed)})
    return ApiError(error.status_code, "BadRequest", str(error.detail))


# What each exception means, in one table for every room.
_MEANINGS: tuple[tuple[type[Exception], Callable[[Request, Exception], ApiError]], ...] = (
    (DomainError, _domain_error),
    (RequestValidationError, _validation_error),
    (ValidationError, _validation_error),
    (StarletteHTTPException, _http_error),
    (DecodeBusy, _decode_busy),
    # A database that is restarting, unreachable, or whose connections are all taken: retry, not a bug.
    (OperationalError, _database_unavailable),
    (SqlAlchemyTimeout, _database_unavailable),
)


def render_custom_vision_error(request: Request, error: ApiError) -> Response:
    response = error_response(request, error.code, error.message, error.status)
    response.headers.update(error.headers)
    return response


def install_error_handlers(app: FastAPI, renderer: Renderer = render_custom_vision_error) -> None:
    """Answer every expected exception with its meaning, in the room's own error body."""
    for exception_type, meaning in _MEANINGS:
        async def handler(request: Request, error: Exception, meaning=meaning) -> Response:  # type: ignore[no-untyped-def]
            return renderer(request, meaning(request, error))

        app.add_exception_handler(exception_type, handler)


class TrackedSend:
    """An ASGI ``send`` that remembers whether the response has started, so a middleware knows if it may still answer."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)


async def send_json(send: Send, status: int, body: dict[str, str], *, close: bool = False) -> None:
    """A JSON answer straight over ASGI, for middleware that runs outside the routes (``close``: end the connection)."""
    encoded = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(encoded)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": encoded})


async def send_error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """A CustomVisionError answered straight over ASGI."""
    await send_json(send, status, {"code": code, "message": message}, close=close)


class ErrorSender(Protocol):
    """How a room writes an error from middleware: ``send_error`` here, Scenario's own in its room."""

    async def __call__(self, send: Send, status: int, code: str, message: str, *, close: bool = False) -> None: ...


class AnsweringMiddleware:
    """Middleware that answers some requests itself, in its room's error body.

    ``skip``: path prefixes of other rooms (Scenario's /v1), passed through untouched; ``send``: how it writes errors.
    """

    def __init__(self, app: ASGIApp, *, skip: tuple[str, ...] = (), send: ErrorSender = send_error) -> None:
        self.app = app
        self.skip = skip
        self.send_error = send

    def passes_through(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        return scope["type"] != "http" or any(path == prefix or path.startswith(prefix + "/") for prefix in self.skip)


class UnexpectedErrorMiddleware(AnsweringMiddleware):
    """Answers a bug with 500 ErrorUnknown and keeps the connection usable.

    Starlette's own catch-all re-raises after answering, which makes the server drop the
    keep-alive connection; clients then fail their next request with a reset.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.passes_through(scope):
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception:
            logger.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if tracked.started:
                raise
            await self.send_error(send, 500, "ErrorUnknown", "The server failed to handle this request.")

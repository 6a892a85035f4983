"""Scenario's error body, ``{"reason": "..."}``, with the HTTP status its SDK maps to an exception class.

Refusals come from the shared domain rules with a Custom Vision code; the code picks the status (the same
table as the Custom Vision room), the message is the reason.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from opencustomvision.api.errors import describe_validation_errors, send_json, status_for
from opencustomvision.domain.errors import DomainError


def scenario_error(status: int, reason: str) -> Response:
    return JSONResponse({"reason": reason}, status_code=status)


async def send_scenario_error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """The same body straight over ASGI, for the middleware outside the routes (``code`` is not shown)."""
    await send_json(send, status, {"reason": message}, close=close)


async def domain_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, DomainError)
    return scenario_error(status_for(error.code), error.message)


async def validation_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, (RequestValidationError, ValidationError))
    return scenario_error(400, f"Invalid request: {describe_validation_errors(error.errors())}")


async def http_error_handler(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        return scenario_error(404, f"No operation at {request.url.path}.")
    if error.status_code == 405:
        return scenario_error(405, f"{request.method} is not supported on {request.url.path}.")
    return scenario_error(error.status_code, str(error.detail))


def _retry_shortly(reason: str) -> Response:
    response = scenario_error(503, reason)
    response.headers["Retry-After"] = "5"
    return response


async def decode_busy_handler(request: Request, error: Exception) -> Response:
    return _retry_shortly("The server is decoding as many images as its memory budget allows; retry in a few seconds.")


async def database_unavailable_handler(request: Request, error: Exception) -> Response:
    return _retry_shortly("The database is unavailable right now; retry shortly.")

"""Scenario's error body, ``{"reason": "..."}``, with the HTTP status its SDK maps to an exception class.

What each exception means (status, message, headers) is the one table of api/errors.py, shared with the Custom
Vision room; this room only writes it in Scenario's body, the message as the reason.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from opencustomvision.api.errors import ApiError, send_json


def scenario_error(status: int, reason: str) -> Response:
    return JSONResponse({"reason": reason}, status_code=status)


async def send_scenario_error(send: Send, status: int, code: str, message: str, *, close: bool = False) -> None:
    """The same body straight over ASGI, for the middleware outside the routes (``code`` is not shown)."""
    await send_json(send, status, {"reason": message}, close=close)


def render_scenario_error(request: Request, error: ApiError) -> Response:
    response = scenario_error(error.status, error.message)
    response.headers.update(error.headers)
    return response

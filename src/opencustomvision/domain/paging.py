"""Continuation tokens: opaque to clients, an offset into an ordered result for us."""

from __future__ import annotations

import base64
import json
from typing import TypeVar

from opencustomvision.domain.errors import DomainError

Item = TypeVar("Item")


def _offset(continuation: str | None, code: str) -> int:
    if not continuation:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(continuation.encode()))["offset"])
    except (ValueError, KeyError, TypeError, OverflowError) as error:
        raise DomainError(code, "The continuation token is not one this service gave.") from error
    if offset < 0:
        raise DomainError(code, "The continuation token is not one this service gave.")
    return offset


def page(items: list[Item], continuation: str | None, size: int, *, error_code: str) -> tuple[list[Item], str | None]:
    """One page of ``items`` and the token for the next, or None when this page is the last."""
    offset = _offset(continuation, error_code)
    chosen = items[offset:offset + size]
    if offset + len(chosen) >= len(items):
        return chosen, None
    return chosen, base64.urlsafe_b64encode(json.dumps({"offset": offset + len(chosen)}).encode()).decode()

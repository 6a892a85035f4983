"""Query parameters as the spec writes them: comma-separated id lists, case-insensitive names."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import Request

from opencustomvision.domain.errors import DomainError


def parse_uuid(value: str, name: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as error:
        raise DomainError("BadRequestInvalidIds", f"{name} holds '{value}', which is not a GUID.") from error


def csv_values(request: Request, name: str) -> list[str]:
    # The SDK sends one comma-separated value; hand-written clients repeat the parameter.
    return [part for raw in request.query_params.getlist(name) for part in raw.split(",") if part.strip()]


def uuid_list(name: str) -> Callable[[Request], list[str]]:
    def dependency(request: Request) -> list[str]:
        return [parse_uuid(value, name) for value in csv_values(request, name)]

    dependency.__name__ = f"{name}_list"
    return dependency

"""Scenario's ids (``model_`` + 22 base62 characters) are our UUIDs, written in base62."""

from __future__ import annotations

import string
import uuid

from opencustomvision.domain.errors import DomainError

_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_INDEX = {character: value for value, character in enumerate(_ALPHABET)}
_LENGTH = 22  # 62**22 > 2**128: every UUID fits

MODEL, ASSET, JOB = "model_", "asset_", "job_"


def encode(prefix: str, identifier: str) -> str:
    value = uuid.UUID(identifier).int
    digits = []
    for _ in range(_LENGTH):
        value, remainder = divmod(value, 62)
        digits.append(_ALPHABET[remainder])
    return prefix + "".join(reversed(digits))


def decoded_or_none(prefix: str, text: str) -> str | None:
    """The UUID behind a Scenario id, or None when ``text`` is not one of ours."""
    body = text[len(prefix):] if text.startswith(prefix) else ""
    if len(body) != _LENGTH or not all(character in _INDEX for character in body):
        return None
    value = 0
    for character in body:
        value = value * 62 + _INDEX[character]
    return str(uuid.UUID(int=value)) if value < 2**128 else None


def decode(prefix: str, text: str, *, what: str) -> str:
    """The UUID behind a Scenario id; anything that is not one of ours answers as absent."""
    decoded = decoded_or_none(prefix, text)
    if decoded is None:
        raise DomainError(_NOT_FOUND_CODES.get(prefix, "NotFound"), f"{what} {text} was not found.")
    return decoded


_NOT_FOUND_CODES = {MODEL: "NotFoundProject", ASSET: "NotFoundImage", JOB: "NotFound"}

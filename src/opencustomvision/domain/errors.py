"""Errors of the domain, each carrying a code of the Custom Vision API's CustomVisionErrorCodes enum."""

from __future__ import annotations


class DomainError(Exception):
    """A refused request. ``code`` is a CustomVisionErrorCodes value; the API layer picks the HTTP status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(code: str, what: str, identifier: object) -> DomainError:
    return DomainError(code, f"{what} {identifier} was not found.")

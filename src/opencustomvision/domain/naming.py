"""Names and descriptions shared by projects and tags: trimmed, bounded, unique in their scope."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.errors import DomainError
from opencustomvision.storage.models import Project, Tag


def require_storable_text(value: str, code: str, what: str) -> str:
    """Refuse text no database can keep: NUL characters (PostgreSQL) and lone surrogates (not UTF-8)."""
    if "\x00" in value:
        raise DomainError(code, f"{what} must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DomainError(code, f"{what} is not valid Unicode text.") from error
    return value


def unique_name(
    session: Session,
    model: type[Project] | type[Tag],
    scope: ColumnElement[bool],
    name: str,
    *,
    invalid_code: str,
    taken_code: str,
    except_id: str | None = None,
) -> str:
    kind = model.__name__.lower()
    name = require_storable_text(name, invalid_code, f"A {kind} name").strip()
    if not name or len(name) > limits.MAX_NAME_LENGTH:
        raise DomainError(invalid_code, f"A {kind} name must be 1 to {limits.MAX_NAME_LENGTH} characters.")
    clash = select(model.id).where(scope, model.name == name)
    if except_id is not None:
        clash = clash.where(model.id != except_id)
    if session.scalars(clash).first() is not None:
        raise DomainError(taken_code, f"A {kind} named '{name}' already exists.")
    return name


def bounded_description(description: str, code: str) -> str:
    require_storable_text(description, code, "A description")
    if len(description) > limits.MAX_DESCRIPTION_LENGTH:
        raise DomainError(code, f"A description is limited to {limits.MAX_DESCRIPTION_LENGTH} characters.")
    return description

"""JSON or XML, both ways: bodies by Content-Type, answers by Accept."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, RootModel, ValidationError
from starlette.responses import Response

from opencustomvision.api.xml import XmlBodyError, dump_xml, is_xml_content_type, load_xml, wants_xml, xml_name
from opencustomvision.domain.errors import DomainError

Model = TypeVar("Model", bound=BaseModel)
Answer = BaseModel | list[BaseModel] | int | None
JSON_TYPES = ("application/json", "text/json")
# What curl sends with -d when no Content-Type is given: tutorials' scripts post JSON that way, so a form-encoded
# body that is JSON is read as JSON; a real form cannot carry the spec's nested bodies and is refused with 415.
FORM_TYPE = "application/x-www-form-urlencoded"


def _jsonable(value: Answer) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


def render(request: Request, value: Answer, *, status: int = 200, items: type[BaseModel] | None = None) -> Response:
    """``items`` names the element type of a list answer, which XML needs even when the list is empty."""
    accept = request.headers.get("accept")
    if wants_xml(accept):
        media_type = "text/xml" if "text/xml" in (accept or "") and "application/xml" not in (accept or "") else "application/xml"
        root = xml_name(list[items]) if items is not None else None  # type: ignore[valid-type]
        return Response(dump_xml(value, root=root), status_code=status, media_type=media_type)
    # ASCII escapes keep any echoed client text (even a lone surrogate) valid JSON.
    body = json.dumps(_jsonable(value), separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json; charset=utf-8")


def media_type_of(request: Request) -> str:
    return (request.headers.get("content-type") or "").split(";")[0].strip().lower()


async def read_body(request: Request, model: type[Model]) -> Model:
    """The request body as ``model``, from JSON or XML; refused with the spec's codes otherwise."""
    body = await request.body()
    media_type = media_type_of(request)
    if not body.strip():
        raise DomainError("BadRequestRequiredParamIsNull", f"The request body ({model.__name__}) is missing.")
    try:
        if is_xml_content_type(media_type):
            if issubclass(model, RootModel):
                return model.model_validate(load_xml(body, model.model_fields["root"].annotation))
            return load_xml(body, model)
        if media_type == FORM_TYPE:
            try:
                parsed = json.loads(body)
            except ValueError:
                raise DomainError("UnsupportedMediaType",
                                  f"A form-encoded body cannot carry {model.__name__}: send it as application/json or application/xml.") from None
            return model.model_validate(parsed)
        if media_type and media_type not in JSON_TYPES:
            raise DomainError("UnsupportedMediaType", f"Send {model.__name__} as application/json or application/xml, not {media_type}.")
        return model.model_validate(json.loads(body))
    except (ValueError, XmlBodyError) as error:
        if isinstance(error, ValidationError):
            raise
        raise DomainError("BadRequest", f"The body is not a valid {model.__name__}: {error}") from error

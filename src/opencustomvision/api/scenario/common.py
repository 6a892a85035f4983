"""What every Scenario route shares: id resolution, answers, paging parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.responses import JSONResponse

from opencustomvision.api.scenario import ids
from opencustomvision.domain.projects import get_project
from opencustomvision.storage.models import Project, Resource

OriginalAssets = Annotated[bool, Query(alias="originalAssets")]
PaginationToken = Annotated[str | None, Query(alias="paginationToken")]


def answer(payload: dict[str, Any], status: int = 200) -> JSONResponse:
    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(by_alias=True, exclude_none=True)
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    return JSONResponse({key: plain(value) for key, value in payload.items()}, status_code=status)


def model_project(session: Session, resource: Resource, model_id: str) -> Project:
    """The resource's project behind a ``model_...`` id; another resource's answers as absent."""
    return get_project(session, resource.id, ids.decode(ids.MODEL, model_id, what="Model"))

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.presenters import present_tag
from opencustomvision.domain import tags
from opencustomvision.domain.iterations import get_iteration
from opencustomvision.domain.projects import get_project
from opencustomvision.storage.models import Project

router = APIRouter()


def _tag_counts(session: SessionDep, project: Project, iteration_id: uuid.UUID | None) -> dict[str, int]:
    """Image counts per tag, of the workspace or of an iteration's training set."""
    if iteration_id is None:
        return tags.image_counts(session, project.id)
    return tags.image_counts(session, project.id, get_iteration(session, project, iteration_id).id)


@router.get("/projects/{project_id:uuid}/tags")
def get_tags(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    resource: TrainingResource,
    iteration_id: Annotated[uuid.UUID | None, Query(alias="iterationId")] = None,
) -> Response:
    project = get_project(session, resource.id, project_id)
    counts = _tag_counts(session, project, iteration_id)
    # An iteration's tags are those it trained on; the workspace shows every tag.
    shown = [tag for tag in tags.list_tags(session, project) if iteration_id is None or tag.id in counts]
    return render(request, [present_tag(tag, counts.get(tag.id, 0)) for tag in shown], items=schemas.Tag)


@router.post("/projects/{project_id:uuid}/tags")
def create_tag(
    request: Request,
    project_id: uuid.UUID,
    session: SessionDep,
    resource: TrainingResource,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,
) -> Response:
    project = get_project(session, resource.id, project_id)
    tag = tags.create_tag(session, project, name=name or "", description=description, tag_type=type)
    return render(request, present_tag(tag, 0))


@router.get("/projects/{project_id:uuid}/tags/{tag_id:uuid}")
def get_tag(
    request: Request,
    project_id: uuid.UUID,
    tag_id: uuid.UUID,
    session: SessionDep,
    resource: TrainingResource,
    iteration_id: Annotated[uuid.UUID | None, Query(alias="iterationId")] = None,
) -> Response:
    project = get_project(session, resource.id, project_id)
    counts = _tag_counts(session, project, iteration_id)
    tag = tags.get_tag(session, project, tag_id)
    return render(request, present_tag(tag, counts.get(tag.id, 0)))


@router.patch("/projects/{project_id:uuid}/tags/{tag_id:uuid}")
async def update_tag(
    request: Request, project_id: uuid.UUID, tag_id: uuid.UUID, session: SessionDep, resource: TrainingResource
) -> Response:
    body = await read_body(request, schemas.Tag)

    def update() -> schemas.Tag:
        project = get_project(session, resource.id, project_id)
        tag = tags.update_tag(session, project, tags.get_tag(session, project, tag_id),
                              name=body.name, description=body.description, tag_type=body.type)
        return present_tag(tag, tags.image_counts(session, project.id).get(tag.id, 0))

    return render(request, await run_in_threadpool(update))


@router.delete("/projects/{project_id:uuid}/tags/{tag_id:uuid}", status_code=204)
def delete_tag(project_id: uuid.UUID, tag_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    tags.delete_tag(session, project, tags.get_tag(session, project, tag_id))
    return Response(status_code=204)

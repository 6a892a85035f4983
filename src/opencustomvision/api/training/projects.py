from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.params import csv_values
from opencustomvision.api.presenters import present_project
from opencustomvision.domain import projects

router = APIRouter()


def target_export_platforms(request: Request) -> list[str] | None:
    values = csv_values(request, "targetExportPlatforms")
    return values or None


@router.get("/projects")
def get_projects(request: Request, session: SessionDep, resource: TrainingResource) -> Response:
    return render(request, [present_project(project) for project in projects.list_projects(session, resource.id)], items=schemas.Project)


@router.post("/projects")
def create_project(
    request: Request,
    session: SessionDep,
    resource: TrainingResource,
    platforms: Annotated[list[str] | None, Depends(target_export_platforms)],
    name: str | None = None,
    description: str | None = None,
    domain_id: Annotated[uuid.UUID | None, Query(alias="domainId")] = None,
    classification_type: Annotated[str | None, Query(alias="classificationType")] = None,
) -> Response:
    project = projects.create_project(
        session,
        resource.id,
        name=name or "",
        description=description,
        domain_id=str(domain_id) if domain_id else None,
        classification_type=classification_type,
        target_export_platforms=platforms,
    )
    return render(request, present_project(project))


@router.get("/projects/{project_id:uuid}")
def get_project(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    return render(request, present_project(projects.get_project(session, resource.id, project_id)))


@router.patch("/projects/{project_id:uuid}")
async def update_project(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource
) -> Response:
    body = await read_body(request, schemas.Project)
    settings = body.settings or schemas.ProjectSettings()
    augmentation = settings.image_processing_settings.augmentation_methods if settings.image_processing_settings else None
    changes = projects.ProjectChanges(
        name=body.name,
        description=body.description,
        domain_id=str(settings.domain_id) if settings.domain_id else None,
        classification_type=settings.classification_type,
        target_export_platforms=list(settings.target_export_platforms) if settings.target_export_platforms is not None else None,
        augmentation_methods=augmentation,
    )

    def update() -> schemas.Project:
        project = projects.get_project(session, resource.id, project_id)
        return present_project(projects.update_project(session, project, changes))

    return render(request, await run_in_threadpool(update))


@router.delete("/projects/{project_id:uuid}", status_code=204)
def delete_project(project_id: uuid.UUID, session: SessionDep, services: ServicesDep, resource: TrainingResource) -> Response:
    project = projects.get_project(session, resource.id, project_id)
    projects.delete_project(session, services.blobs, project)
    return Response(status_code=204)

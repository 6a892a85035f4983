"""Exports of iterations (ExportIteration, GetExports), of projects (ExportProject, ImportProject), and GetArtifact."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.blobs import content_type
from opencustomvision.api.deps import BlobLinks, Links, ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import render
from opencustomvision.api.presenters import present_project
from opencustomvision.domain import exports, iterations
from opencustomvision.domain.artifacts import artifact_key
from opencustomvision.domain.project_import import import_project
from opencustomvision.domain.projects import get_project
from opencustomvision.jobs.training import retag_model
from opencustomvision.storage import models

router = APIRouter()


def present_export(export: models.Export, links: BlobLinks) -> schemas.Export:
    done = export.status == exports.DONE and export.package_key is not None
    return schemas.Export(platform=export.platform, status=export.status,  # type: ignore[arg-type]
                          download_uri=links.url(export.package_key) if done else None,  # type: ignore[arg-type]
                          flavor=export.flavor, newer_version_available=exports.is_outdated(export))


@router.post("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/export")
def export_iteration(request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep,
                     services: ServicesDep, resource: TrainingResource, links: Links, platform: str,
                     flavor: str | None = None) -> Response:
    project = get_project(session, resource.id, project_id)
    queued = exports.start_export(session, iterations.get_iteration(session, project, iteration_id), platform, flavor)
    for key in queued.replaced_packages:
        services.blobs.delete(key)
    services.jobs.submit(queued.job_id)
    return render(request, present_export(queued.export, links))


@router.get("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/export")
def get_exports(request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep,
                resource: TrainingResource, links: Links) -> Response:
    project = get_project(session, resource.id, project_id)
    found = exports.list_exports(session, iterations.get_iteration(session, project, iteration_id))
    return render(request, [present_export(export, links) for export in found], items=schemas.Export)


@router.get("/projects/{project_id:uuid}/export")
def export_project(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    summary = exports.export_project(session, get_project(session, resource.id, project_id))
    return render(request, schemas.ProjectExport(
        iteration_count=summary.iteration_count, image_count=summary.image_count, tag_count=summary.tag_count,
        region_count=summary.region_count, estimated_import_time_in_ms=summary.estimated_import_ms, token=summary.token))


@router.post("/projects/import")
async def import_project_copy(request: Request, session: SessionDep, services: ServicesDep, resource: TrainingResource,
                              token: str, name: Annotated[str | None, Query()] = None) -> Response:
    def copy() -> schemas.Project:
        return present_project(import_project(session, services.blobs, resource, token, name, retag_model))

    return render(request, await run_in_threadpool(copy))


@router.get("/projects/{project_id:uuid}/artifacts")
def get_artifact(project_id: uuid.UUID, path: str, session: SessionDep, services: ServicesDep,
                 resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    data = services.blobs.get(artifact_key(session, services.blobs, project, path))
    return Response(data, media_type=content_type(data))

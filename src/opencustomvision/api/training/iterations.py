from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import Links, ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.params import uuid_list
from opencustomvision.api.presenters import present_box, present_image
from opencustomvision.domain import exports, iterations, limits
from opencustomvision.domain.performance import image_performances, iteration_performance
from opencustomvision.domain.projects import get_project
from opencustomvision.storage import models

router = APIRouter()


def present_iteration(iteration: models.Iteration) -> schemas.Iteration:
    seconds = iteration.training_seconds
    return schemas.Iteration(
        id=uuid.UUID(iteration.id),
        name=iteration.name,
        status=iteration.status,
        created=iteration.created,
        last_modified=iteration.last_modified,
        trained_at=iteration.trained_at,
        project_id=uuid.UUID(iteration.project_id),
        exportable=bool(exports.exportable_platforms(iteration)),
        exportable_to=exports.exportable_platforms(iteration),
        domain_id=uuid.UUID(iteration.domain_id),
        classification_type=iteration.classification_type,  # type: ignore[arg-type]
        training_type=iteration.training_type,  # type: ignore[arg-type]
        reserved_budget_in_hours=iteration.reserved_budget_in_hours,
        training_time_in_minutes=math.ceil(seconds / 60) if seconds is not None else 0,
        publish_name=iteration.publish_name,
        original_publish_resource_id=iteration.original_publish_resource_id,
    )


@router.post("/projects/{project_id:uuid}/train")
async def train_project(
    request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep, resource: TrainingResource,
    training_type: Annotated[str, Query(alias="trainingType")] = "Regular",
    reserved_budget_in_hours: Annotated[int, Query(alias="reservedBudgetInHours", ge=0, le=10_000)] = 0,
    force_train: Annotated[bool, Query(alias="forceTrain")] = False,
    notification_email: Annotated[str | None, Query(alias="notificationEmailAddress")] = None,
) -> Response:
    body = await request.body()
    selected = None
    if body.strip():
        parameters = await read_body(request, schemas.TrainingParameters)
        selected = [str(tag_id) for tag_id in parameters.selected_tags] if parameters.selected_tags is not None else None
    training = iterations.TrainingRequest(training_type=training_type, reserved_budget_in_hours=reserved_budget_in_hours,
                                          force_train=force_train, notification_email=notification_email,
                                          selected_tag_ids=selected)

    def start() -> iterations.QueuedTraining:
        project = get_project(session, resource.id, project_id)
        advanced_enabled = services.settings.advanced_training_max_seconds > 0
        return iterations.start_training(session, project, training, advanced_enabled=advanced_enabled)

    queued = await run_in_threadpool(start)
    services.jobs.submit(queued.job_id)
    return render(request, present_iteration(queued.iteration))


@router.get("/projects/{project_id:uuid}/iterations")
def get_iterations(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    return render(request, [present_iteration(it) for it in iterations.list_iterations(session, project)], items=schemas.Iteration)


@router.get("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}")
def get_iteration(request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep,
                  resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    return render(request, present_iteration(iterations.get_iteration(session, project, iteration_id)))


@router.patch("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}")
async def update_iteration(request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep,
                           resource: TrainingResource) -> Response:
    body = await read_body(request, schemas.Iteration)

    def update() -> schemas.Iteration:
        project = get_project(session, resource.id, project_id)
        iteration = iterations.get_iteration(session, project, iteration_id)
        if body.name is not None:
            iteration = iterations.rename_iteration(session, project, iteration, body.name)
        return present_iteration(iteration)

    return render(request, await run_in_threadpool(update))


@router.delete("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}", status_code=204)
def delete_iteration(project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                     resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    iteration = iterations.get_iteration(session, project, iteration_id)
    packages = exports.exports_blob_prefix(iteration)
    model_key = iterations.delete_iteration(session, iteration)
    if model_key is not None:
        services.blobs.delete(model_key)
    services.blobs.delete_prefix(packages)
    return Response(status_code=204)


@router.post("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/publish")
def publish_iteration(
    request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep, resource: TrainingResource,
    publish_name: Annotated[str, Query(alias="publishName")] = "",
    prediction_id: Annotated[str, Query(alias="predictionId")] = "",
    overwrite: bool = False,
) -> Response:
    project = get_project(session, resource.id, project_id)
    iterations.publish_iteration(session, project, iterations.get_iteration(session, project, iteration_id),
                                 publish_name, prediction_id, overwrite=overwrite)
    return render(request, True)


@router.delete("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/publish", status_code=204)
def unpublish_iteration(project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    iterations.unpublish_iteration(session, iterations.get_iteration(session, project, iteration_id))
    return Response(status_code=204)


Threshold = Annotated[float, Query(ge=0, le=1)]


@router.get("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/performance")
def get_iteration_performance(
    request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep, resource: TrainingResource,
    threshold: Threshold = 0.5, overlap_threshold: Annotated[float, Query(alias="overlapThreshold", ge=0, le=1)] = 0.3,
) -> Response:
    project = get_project(session, resource.id, project_id)
    iteration = iterations.get_iteration(session, project, iteration_id)
    report = iteration_performance(session, iteration, threshold, overlap_threshold)
    return render(request, schemas.IterationPerformance(
        per_tag_performance=[
            schemas.TagPerformance(id=uuid.UUID(tag.tag_id), name=tag.name, precision=tag.precision,
                                   precision_std_deviation=tag.precision_std, recall=tag.recall,
                                   recall_std_deviation=tag.recall_std, average_precision=tag.average_precision)
            for tag in report.per_tag
        ],
        precision=report.precision, precision_std_deviation=report.precision_std, recall=report.recall,
        recall_std_deviation=report.recall_std, average_precision=report.average_precision,
    ))


@router.get("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/performance/images")
def get_image_performances(
    request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep, resource: TrainingResource,
    links: Links, tag_ids: Annotated[list[str], Depends(uuid_list("tagIds"))],
    order_by: Annotated[str, Query(alias="orderBy")] = "Newest",
    take: Annotated[int, Query(ge=0, le=limits.MAX_TAKE)] = limits.DEFAULT_TAKE,
    skip: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    project = get_project(session, resource.id, project_id)
    iteration = iterations.get_iteration(session, project, iteration_id)
    found = image_performances(session, iteration, tag_ids, order_by=order_by)[skip:skip + take]
    answers = []
    for image, predictions in found:
        shown = present_image(image, links)
        answers.append(schemas.ImagePerformance(
            predictions=[schemas.Prediction(probability=p, tag_id=uuid.UUID(t), tag_name=name,
                                            bounding_box=None if box is None else present_box(box))
                         for t, name, p, box in predictions],
            id=shown.id, created=shown.created, width=shown.width, height=shown.height,
            image_uri=shown.resized_image_uri, thumbnail_uri=shown.thumbnail_uri, tags=shown.tags, regions=shown.regions,
        ))
    return render(request, answers, items=schemas.ImagePerformance)


@router.get("/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/performance/images/count")
def get_image_performance_count(request: Request, project_id: uuid.UUID, iteration_id: uuid.UUID, session: SessionDep,
                                resource: TrainingResource, tag_ids: Annotated[list[str], Depends(uuid_list("tagIds"))]) -> Response:
    project = get_project(session, resource.id, project_id)
    iteration = iterations.get_iteration(session, project, iteration_id)
    return render(request, len(image_performances(session, iteration, tag_ids)))

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import Links, ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.params import uuid_list
from opencustomvision.api.presenters import present_create_summary, present_prediction, present_stored_prediction
from opencustomvision.api.training.images import regions_of
from opencustomvision.api.uploads import uploaded_images
from opencustomvision.api.versions import batch_status
from opencustomvision.domain import predictions
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.images import ImageInput
from opencustomvision.domain.projects import get_project
from opencustomvision.domain.tags import list_tags
from opencustomvision.imaging.fetch import FetchError, fetch_bytes

router = APIRouter()
IterationId = Annotated[uuid.UUID | None, Query(alias="iterationId")]


def _quick_test(session: SessionDep, services: ServicesDep, resource: TrainingResource, project_id: uuid.UUID,
                iteration_id: uuid.UUID | None, store: bool, image: bytes | str) -> schemas.ImagePrediction:
    project = get_project(session, resource.id, project_id)
    iteration = predictions.latest_completed_iteration(session, project, str(iteration_id) if iteration_id else None)
    if isinstance(image, str):
        try:
            image = fetch_bytes(image, services.fetch_policy)
        except FetchError as error:
            raise DomainError("BadRequestImageUrl", f"The image could not be fetched: {error}") from error
    outcome = predictions.predict(session, services.blobs, services.predictor, iteration, image, store=store)
    return present_prediction(outcome, {tag.id: tag for tag in list_tags(session, project)})


@router.post("/projects/{project_id:uuid}/quicktest/image")
async def quick_test_image(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                           resource: TrainingResource, iteration_id: IterationId = None, store: bool = True) -> Response:
    await run_in_threadpool(get_project, session, resource.id, project_id)
    uploads = await uploaded_images(request)
    if len(uploads) != 1:
        raise DomainError("BadRequestImageStream", "Send exactly one image, as imageData or as the request body.")
    return render(request, await run_in_threadpool(_quick_test, session, services, resource, project_id, iteration_id, store, uploads[0]))


@router.post("/projects/{project_id:uuid}/quicktest/url")
async def quick_test_image_url(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                               resource: TrainingResource, iteration_id: IterationId = None, store: bool = True) -> Response:
    body = await read_body(request, schemas.ImageUrl)
    return render(request, await run_in_threadpool(_quick_test, session, services, resource, project_id, iteration_id, store, body.url))


@router.post("/projects/{project_id:uuid}/predictions/query")
async def query_predictions(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource,
                            links: Links) -> Response:
    token = await read_body(request, schemas.PredictionQueryToken)
    query = predictions.PredictionQuery(
        iteration_id=str(token.iteration_id) if token.iteration_id else None,
        application=token.application,
        tags=tuple(predictions.TagThreshold(str(t.id), t.min_threshold, t.max_threshold) for t in token.tags or []),
        start_time=token.start_time, end_time=token.end_time,
        order_by="Oldest" if token.order_by == "Oldest" else "Newest",
        max_count=token.max_count if token.max_count is not None else 50,
        continuation=token.continuation,
    )

    def run() -> schemas.PredictionQueryResult:
        project = get_project(session, resource.id, project_id)
        found, continuation = predictions.query_predictions(session, project, query)
        tags = {tag.id: tag for tag in list_tags(session, project)}
        next_token = token.model_copy(update={"continuation": continuation}) if continuation else None
        return schemas.PredictionQueryResult(token=next_token, results=[present_stored_prediction(p, tags, links) for p in found])

    return render(request, await run_in_threadpool(run))


@router.delete("/projects/{project_id:uuid}/predictions", status_code=204)
def delete_prediction(project_id: uuid.UUID, session: SessionDep, services: ServicesDep, resource: TrainingResource,
                      ids: Annotated[list[str], Depends(uuid_list("ids"))]) -> Response:
    predictions.delete_predictions(session, services.blobs, get_project(session, resource.id, project_id), ids)
    return Response(status_code=204)


@router.post("/projects/{project_id:uuid}/images/predictions")
async def create_images_from_predictions(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                                         resource: TrainingResource, links: Links) -> Response:
    batch = await read_body(request, schemas.ImageIdCreateBatch)
    entries = batch.images or []
    inputs = [ImageInput(tag_ids=[str(t) for t in entry.tag_ids or []], regions=regions_of(entry.regions)) for entry in entries]

    def create() -> schemas.ImageCreateSummary:
        project = get_project(session, resource.id, project_id)
        outcomes = predictions.create_images_from_predictions(
            session, services.blobs, project, inputs, [str(entry.id) for entry in entries],
            tag_ids=[str(t) for t in batch.tag_ids or []], metadata=batch.metadata)
        return present_create_summary(outcomes, links)

    summary = await run_in_threadpool(create)
    return render(request, summary, status=batch_status(request, complete=summary.is_batch_successful))

"""The Prediction API: /customvision/{v3.0,v3.1}/prediction/{projectId}/{classify|detect}/iterations/{name}/{image|url}[/nostore]."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import ServicesDep, SessionDep, get_session, resource_for_headers
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.presenters import present_prediction
from opencustomvision.api.uploads import uploaded_images
from opencustomvision.api.versions import is_before
from opencustomvision.domain.catalog import is_detection
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import published_iteration
from opencustomvision.domain.predictions import predict
from opencustomvision.domain.resources import resource_for_prediction_key
from opencustomvision.imaging.fetch import FetchError, fetch_bytes
from opencustomvision.storage.models import Resource, Tag

router = APIRouter()
PREDICTION_KEY_HEADERS = ("prediction-key", "ocp-apim-subscription-key")


def get_prediction_resource(request: Request, session: Annotated[Session, Depends(get_session)]) -> Resource:
    return resource_for_headers(request, session, PREDICTION_KEY_HEADERS, resource_for_prediction_key)


PredictionResource = Annotated[Resource, Depends(get_prediction_resource)]


def _predict(request: Request, session: Session, services: ServicesDep, resource: Resource, project_id: uuid.UUID,
             published_name: str, image: bytes | str, application: str | None) -> schemas.ImagePrediction:
    iteration = published_iteration(session, resource, project_id, published_name)
    detecting = "/detect/" in request.url.path
    if detecting != is_detection(iteration.domain_id):
        kind = "an object detection" if is_detection(iteration.domain_id) else "a classification"
        raise DomainError("BadRequestOperationNotSupported",
                          f"'{published_name}' is {kind} model: call {'detect' if not detecting else 'classify'} instead.")
    if isinstance(image, str):
        try:
            image = fetch_bytes(image, services.fetch_policy)
        except FetchError as error:
            raise DomainError("BadRequestImageUrl", f"The image could not be fetched: {error}") from error
    store = not request.url.path.endswith("/nostore")
    outcome = predict(session, services.blobs, services.predictor, iteration, image, store=store, application=application)
    tags = {tag.id: tag for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}
    # tagType arrived in v3.1; v3.0 clients never saw it.
    with_type = not is_before(request, "v3.1")
    return present_prediction(outcome, tags, with_type=with_type)


@router.post("/{project_id:uuid}/classify/iterations/{published_name}/image")
@router.post("/{project_id:uuid}/classify/iterations/{published_name}/image/nostore")
@router.post("/{project_id:uuid}/detect/iterations/{published_name}/image")
@router.post("/{project_id:uuid}/detect/iterations/{published_name}/image/nostore")
async def predict_image(request: Request, project_id: uuid.UUID, published_name: str, session: SessionDep,
                         services: ServicesDep, resource: PredictionResource, application: str | None = None) -> Response:
    uploads = await uploaded_images(request)
    if len(uploads) != 1:
        raise DomainError("BadRequestImageStream", "Send exactly one image, as imageData or as the request body.")
    return render(request, await run_in_threadpool(_predict, request, session, services, resource, project_id,
                                                   published_name, uploads[0], application))


@router.post("/{project_id:uuid}/classify/iterations/{published_name}/url")
@router.post("/{project_id:uuid}/classify/iterations/{published_name}/url/nostore")
@router.post("/{project_id:uuid}/detect/iterations/{published_name}/url")
@router.post("/{project_id:uuid}/detect/iterations/{published_name}/url/nostore")
async def predict_image_url(request: Request, project_id: uuid.UUID, published_name: str, session: SessionDep,
                             services: ServicesDep, resource: PredictionResource, application: str | None = None) -> Response:
    body = await read_body(request, schemas.ImageUrl)
    return render(request, await run_in_threadpool(_predict, request, session, services, resource, project_id,
                                                   published_name, body.url, application))

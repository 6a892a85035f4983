"""The Prediction API: /customvision/{v3.0,v3.1}/prediction/{projectId}/classify/iterations/{name}/{image|url}[/nostore]."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import ServicesDep, SessionDep, get_session, key_from
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.uploads import uploaded_images
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import published_iteration
from opencustomvision.domain.resources import resource_for_prediction_key
from opencustomvision.imaging.decode import ImageFormatError, ImageSizeError
from opencustomvision.imaging.fetch import FetchError, fetch_bytes
from opencustomvision.storage.models import Resource, Tag, utcnow

router = APIRouter()
PREDICTION_KEY_HEADERS = ("prediction-key", "ocp-apim-subscription-key")


def get_prediction_resource(request: Request, session: Annotated[Session, Depends(get_session)]) -> Resource:
    key = key_from(request, PREDICTION_KEY_HEADERS)
    resource = resource_for_prediction_key(session, key) if key else None
    if resource is None:
        raise DomainError("NotFoundApimSubscription", "Access denied: send a valid key in the Prediction-Key header.")
    return resource


PredictionResource = Annotated[Resource, Depends(get_prediction_resource)]


def _classify(request: Request, session: Session, services: ServicesDep, resource: Resource,
              project_id: uuid.UUID, published_name: str, image: bytes) -> schemas.ImagePrediction:
    iteration = published_iteration(session, resource, project_id, published_name)
    if iteration.model_key is None:
        raise DomainError("ErrorPredictionModelNotFound", "The published iteration has no model.")
    try:
        ranked = services.predictor.classify(iteration.model_key, image)
    except ImageSizeError as error:
        raise DomainError("BadRequestImageSizeBytes", f"The image is too large: {error}") from error
    except ImageFormatError as error:
        raise DomainError("BadRequestImageFormat", f"The image cannot be read: {error}") from error
    tags = {tag.id: tag for tag in session.query(Tag).filter(Tag.project_id == iteration.project_id)}
    with_type = request.scope.get("state", {}).get("api_version") != "v3.0"
    return schemas.ImagePrediction(
        id=uuid.uuid4(),
        project=uuid.UUID(iteration.project_id),
        iteration=uuid.UUID(iteration.id),
        created=utcnow(),
        predictions=[
            schemas.Prediction(probability=probability, tag_id=uuid.UUID(tag_id),
                               tag_name=tags[tag_id].name if tag_id in tags else None,
                               tag_type=(tags[tag_id].type if tag_id in tags else None) if with_type else None)
            for tag_id, probability in ranked
        ],
    )


@router.post("/{project_id}/classify/iterations/{published_name}/image")
@router.post("/{project_id}/classify/iterations/{published_name}/image/nostore")
async def classify_image(request: Request, project_id: uuid.UUID, published_name: str, session: SessionDep,
                         services: ServicesDep, resource: PredictionResource, application: str | None = None) -> Response:
    uploads = await uploaded_images(request)
    if len(uploads) != 1:
        raise DomainError("BadRequestImageStream", "Send exactly one image, as imageData or as the request body.")
    prediction = await run_in_threadpool(_classify, request, session, services, resource, project_id, published_name, uploads[0])
    return render(request, prediction)


@router.post("/{project_id}/classify/iterations/{published_name}/url")
@router.post("/{project_id}/classify/iterations/{published_name}/url/nostore")
async def classify_image_url(request: Request, project_id: uuid.UUID, published_name: str, session: SessionDep,
                             services: ServicesDep, resource: PredictionResource, application: str | None = None) -> Response:
    body = await read_body(request, schemas.ImageUrl)

    def fetch_and_classify() -> schemas.ImagePrediction:
        published_iteration(session, resource, project_id, published_name)
        try:
            image = fetch_bytes(body.url, services.fetch_policy)
        except FetchError as error:
            raise DomainError("BadRequestImageUrl", f"The image could not be fetched: {error}") from error
        return _classify(request, session, services, resource, project_id, published_name, image)

    return render(request, await run_in_threadpool(fetch_and_classify))


def _detection_pending(_: PredictionResource) -> None:
    raise DomainError("BadRequestNotSupported", "Object detection predictions are not available in this version of OpenCustomVision yet.")


for _suffix in ("image", "image/nostore", "url", "url/nostore"):
    router.add_api_route(f"/{{project_id}}/detect/iterations/{{published_name}}/{_suffix}", _detection_pending, methods=["POST"])

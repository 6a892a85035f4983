"""Predictions: made by a trained iteration, kept (unless asked not to) for QueryPredictions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.catalog import is_detection
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.images import Box, ImageCreateOutcome, ImageInput, check_ids, create_images
from opencustomvision.domain.iterations import COMPLETED, get_iteration
from opencustomvision.domain.naming import require_storable_text
from opencustomvision.domain.paging import page
from opencustomvision.domain.projects import project_blob_prefix
from opencustomvision.imaging.decode import ImageFormatError, ImageLimits, ImageSizeError, prepare_image
from opencustomvision.storage.atomic import commit_or_discard, discard, put_all
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Iteration, Project, StoredPrediction, utcnow

PREDICTION_IMAGE_LIMITS = ImageLimits(max_bytes=4 * 1024 * 1024)
MAX_QUERY_RESULTS = 256
_APPLICATION_NAME_LENGTH = 64


class ModelRunner(Protocol):
    """Runs an iteration's stored model (``inference.Predictor``)."""

    def classify(self, model_key: str, image_bytes: bytes) -> list[tuple[str, float]]: ...

    def detect(self, model_key: str, image_bytes: bytes) -> list[tuple[str, float, Box]]: ...


@dataclass(frozen=True)
class PredictionOutcome:
    id: str
    project_id: str
    iteration_id: str
    created: datetime
    ranked: list[tuple[str, float]]
    boxes: list[Box] | None = None  # object detection: the box of each ranked prediction


@dataclass(frozen=True)
class TagThreshold:
    tag_id: str
    min_threshold: float = 0.0
    max_threshold: float = 1.0


@dataclass(frozen=True)
class PredictionQuery:
    iteration_id: str | None = None
    application: str | None = None
    tags: tuple[TagThreshold, ...] = ()
    start_time: datetime | None = None
    end_time: datetime | None = None
    order_by: str = "Newest"
    max_count: int = 50
    continuation: str | None = None


def latest_completed_iteration(session: Session, project: Project, iteration_id: str | None) -> Iteration:
    if iteration_id is not None:
        iteration = get_iteration(session, project, iteration_id)
        if iteration.status != COMPLETED:
            raise DomainError("BadRequestIterationIsNotTrained", f"Iteration {iteration_id} has not completed training.")
        return iteration
    query = (
        select(Iteration)
        .where(Iteration.project_id == project.id, Iteration.status == COMPLETED)
        .order_by(Iteration.trained_at.desc())
        .limit(1)
    )
    iteration = session.scalars(query).first()
    if iteration is None:
        raise DomainError("NotFoundIteration", "This project has no trained iteration yet.")
    return iteration


def _check_application(application: str | None) -> str | None:
    if application is None:
        return None
    require_storable_text(application, "BadRequestPredictionInvalidApplicationName", "An application name")
    if len(application) > _APPLICATION_NAME_LENGTH:
        raise DomainError("BadRequestPredictionInvalidApplicationName", f"An application name has at most {_APPLICATION_NAME_LENGTH} characters.")
    return application


def _utc(moment: datetime | None) -> datetime | None:
    """A query bound in UTC; a time zone offset that pushes it outside the calendar is refused."""
    if moment is None:
        return None
    try:
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except OverflowError as error:
        raise DomainError("BadRequestPredictionInvalidQueryParameters", f"{moment.isoformat()} is outside the calendar in UTC.") from error


def predict(
    session: Session,
    blobs: BlobStore,
    runner: ModelRunner,
    iteration: Iteration,
    image_bytes: bytes,
    *,
    store: bool,
    application: str | None = None,
) -> PredictionOutcome:
    """Classify ``image_bytes`` with ``iteration``; keep the image and the answer when ``store``."""
    application = _check_application(application)
    if iteration.model_key is None:
        raise DomainError("ErrorPredictionModelNotFound", "The iteration has no model.")
    boxes: list[Box] | None = None
    limit = PREDICTION_IMAGE_LIMITS.max_bytes
    if len(image_bytes) > limit:
        raise DomainError("BadRequestImageSizeBytes",
                          f"Prediction images are at most {limit // (1024 * 1024)} MB ({limit} bytes); this one is larger.")
    try:
        if is_detection(iteration.domain_id):
            found = runner.detect(iteration.model_key, image_bytes)
            ranked, boxes = [(tag_id, p) for tag_id, p, _ in found], [box for _, _, box in found]
        else:
            ranked = runner.classify(iteration.model_key, image_bytes)
        prepared = prepare_image(image_bytes, PREDICTION_IMAGE_LIMITS) if store else None
    except ImageSizeError as error:
        raise DomainError("BadRequestImageSizeBytes", f"The image is too large to predict on: {error}") from error
    except ImageFormatError as error:
        raise DomainError("BadRequestImageFormat", f"The image cannot be read: {error}") from error
    outcome = PredictionOutcome(str(uuid.uuid4()), iteration.project_id, iteration.id, utcnow(), ranked, boxes)
    if prepared is None:
        return outcome
    base = f"{project_blob_prefix(iteration.project_id)}/predictions/{outcome.id}"
    keys = (f"{base}/original", f"{base}/resized", f"{base}/thumbnail")
    put_all(blobs, zip(keys, (prepared.original, prepared.resized, prepared.thumbnail)))
    session.add(StoredPrediction(
        id=outcome.id, project_id=iteration.project_id, iteration_id=iteration.id, domain_id=iteration.domain_id,
        created=outcome.created, application=application, width=prepared.width, height=prepared.height,
        original_key=keys[0], resized_key=keys[1], thumbnail_key=keys[2],
        results=[[tag_id, probability, *box] for (tag_id, probability), box in zip(ranked, boxes)] if boxes is not None
        else [[tag_id, probability] for tag_id, probability in ranked],
    ))
    commit_or_discard(session, blobs, keys)
    return outcome


def _matches(prediction: StoredPrediction, thresholds: Sequence[TagThreshold]) -> bool:
    probabilities: dict[str, float] = {}
    for tag_id, probability, *_ in prediction.results:  # detection: a tag's best box counts
        probabilities[tag_id] = max(probability, probabilities.get(tag_id, 0.0))
    return all(t.min_threshold <= probabilities.get(t.tag_id, 0.0) <= t.max_threshold for t in thresholds)


def query_predictions(session: Session, project: Project, query: PredictionQuery) -> tuple[list[StoredPrediction], str | None]:
    """Stored predictions matching ``query``, and a continuation token when more remain."""
    if not 0 < query.max_count <= MAX_QUERY_RESULTS:
        raise DomainError("BadRequestPredictionResultsExceededCount", f"maxCount is 1 to {MAX_QUERY_RESULTS}.")
    if len(query.tags) > limits.MAX_TAGS_PER_QUERY:
        raise DomainError("BadRequestPredictionTagsExceededCount", f"At most {limits.MAX_TAGS_PER_QUERY} tags per query.")
    if query.order_by not in ("Newest", "Oldest"):
        raise DomainError("BadRequestPredictionInvalidQueryParameters", "orderBy is Newest or Oldest.")
    application = _check_application(query.application)
    start_time, end_time = _utc(query.start_time), _utc(query.end_time)
    statement = select(StoredPrediction).where(StoredPrediction.project_id == project.id)
    if query.iteration_id:
        statement = statement.where(StoredPrediction.iteration_id == query.iteration_id)
    if application:
        statement = statement.where(StoredPrediction.application == application)
    if start_time:
        statement = statement.where(StoredPrediction.created >= start_time)
    if end_time:
        statement = statement.where(StoredPrediction.created <= end_time)
    newest = query.order_by != "Oldest"
    statement = statement.order_by(StoredPrediction.created.desc() if newest else StoredPrediction.created.asc(), StoredPrediction.id)
    matching = [p for p in session.scalars(statement) if _matches(p, query.tags)]
    return page(matching, query.continuation, query.max_count, error_code="BadRequestPredictionInvalidQueryParameters")


def delete_predictions(session: Session, blobs: BlobStore, project: Project, ids: Sequence[uuid.UUID | str]) -> None:
    if len(ids) > limits.MAX_IMAGES_PER_BATCH:
        raise DomainError("BadRequestPredictionIdsExceededCount", f"At most {limits.MAX_IMAGES_PER_BATCH} predictions per request.")
    wanted = check_ids(ids, what="predictions", limit=limits.MAX_IMAGES_PER_BATCH)
    if not wanted:
        raise DomainError("BadRequestPredictionIdsMissing", "Give the ids of the predictions to delete.")
    doomed = list(session.scalars(select(StoredPrediction).where(StoredPrediction.project_id == project.id,
                                                                 StoredPrediction.id.in_(wanted))))
    for prediction in doomed:
        session.delete(prediction)
    session.commit()
    discard(blobs, (key for prediction in doomed
                    for key in (prediction.original_key, prediction.resized_key, prediction.thumbnail_key)))


def create_images_from_predictions(
    session: Session, blobs: BlobStore, project: Project, entries: Sequence[ImageInput], prediction_ids: Sequence[str],
    *, tag_ids: Sequence[str] = (), metadata: dict[str, str] | None = None,
) -> list[ImageCreateOutcome]:
    """Training images made of stored prediction images; ``entries`` carry each one's tags and regions."""
    if not prediction_ids:
        raise DomainError("BadRequestImageBatch", "The batch holds no images.")
    if len(prediction_ids) > limits.MAX_IMAGES_PER_BATCH:
        raise DomainError("BadRequestImageBatch", f"A batch holds at most {limits.MAX_IMAGES_PER_BATCH} images.")
    ids = [prediction_id.lower() for prediction_id in prediction_ids]
    found = {p.id: p for p in session.scalars(select(StoredPrediction).where(
        StoredPrediction.project_id == project.id, StoredPrediction.id.in_(ids)))}
    sources = []
    for entry, prediction_id in zip(entries, ids):
        prediction = found.get(prediction_id)
        if prediction is not None:
            sources.append(ImageInput(data=blobs.get(prediction.original_key), tag_ids=entry.tag_ids,
                                      regions=entry.regions, source_url=prediction_id))
    created = iter(create_images(session, blobs, project, sources, tag_ids=tag_ids, metadata=metadata) if sources else [])
    return [next(created) if prediction_id in found else ImageCreateOutcome("ErrorSource", None, prediction_id) for prediction_id in ids]

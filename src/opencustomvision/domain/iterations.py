"""Iterations: what may be trained, the life of a training run, naming and publishing."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.catalog import OBJECT_DETECTION, find_domain
from opencustomvision.domain import jobs
from opencustomvision.domain.errors import DomainError, not_found
from opencustomvision.domain.naming import require_storable_text
from opencustomvision.storage.models import Image, ImageEmbedding, ImageTag, Iteration, IterationImage, Project, Resource, Tag, utcnow

TRAINING, COMPLETED, FAILED = "Training", "Completed", "Failed"
# What a cancelled training's iteration says as its failure reason (Scenario reads it as training-canceled).
CANCELED_REASON = "canceled"
TRAINING_TYPES = ("Regular", "Advanced")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PUBLISH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,254}$")


@dataclass(frozen=True)
class TrainingRequest:
    training_type: str = "Regular"
    reserved_budget_in_hours: int = 0
    force_train: bool = False
    notification_email: str | None = None
    selected_tag_ids: list[str] | None = None


TaggedRegion = tuple[str, float, float, float, float]  # (tag id, left, top, width, height), normalised


@dataclass(frozen=True)
class TrainingExample:
    """One image of a training snapshot: the tags it carried and, for object detection, its regions."""

    image_id: str
    tag_ids: tuple[str, ...]
    regions: tuple[TaggedRegion, ...] = ()


def list_iterations(session: Session, project: Project) -> list[Iteration]:
    return list(session.scalars(select(Iteration).where(Iteration.project_id == project.id).order_by(Iteration.created)))


def get_iteration(session: Session, project: Project, iteration_id: uuid.UUID | str) -> Iteration:
    iteration = session.get(Iteration, str(iteration_id))
    if iteration is None or iteration.project_id != project.id:
        raise not_found("NotFoundIteration", "Iteration", iteration_id)
    return iteration


def _training_tags(session: Session, project: Project, selected: list[str] | None) -> list[Tag]:
    tags = list(session.scalars(select(Tag).where(Tag.project_id == project.id)))
    if selected is None:
        return tags
    wanted = {tag_id.lower() for tag_id in selected}
    known = {tag.id for tag in tags}
    if wanted - known:
        raise DomainError("BadRequestTrainingValidationFailed", f"Selected tags not in this project: {sorted(wanted - known)}.")
    # The Negative tag always takes part: it tells the model what none of the tags looks like.
    return [tag for tag in tags if tag.id in wanted or tag.type == "Negative"]


def training_snapshot(session: Session, project: Project, tags: list[Tag], *, detection: bool = False) -> list[TrainingExample]:
    """The images a training learns from. Detection learns from regions: an image without one is left out."""
    tag_ids = {tag.id for tag in tags}
    images = session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.created, Image.id))
    snapshot = []
    for image in images:
        if detection:
            regions = tuple(sorted((r.tag_id, r.left, r.top, r.width, r.height) for r in image.regions if r.tag_id in tag_ids))
            if regions:
                snapshot.append(TrainingExample(image.id, tuple(sorted({r[0] for r in regions})), regions))
            continue
        carried = tuple(sorted(image_tag.tag_id for image_tag in image.tags if image_tag.tag_id in tag_ids))
        if carried:
            snapshot.append(TrainingExample(image.id, carried))
    return snapshot


def _validate_detection(session: Session, tags: list[Tag], snapshot: list[TrainingExample]) -> None:
    negative = [tag for tag in tags if tag.type == "Negative"]
    if negative and session.scalar(select(func.count()).select_from(ImageTag).where(ImageTag.tag_id.in_([t.id for t in negative]))):
        raise DomainError("BadRequestDetectionTrainingNotAllowNegativeTag",
                          "Object detection cannot train with a Negative tag: remove it from its images or delete it.")
    regular = [tag for tag in tags if tag.type != "Negative"]
    if not snapshot or not regular:
        raise DomainError("BadRequestDetectionTrainingValidationFailed",
                          "Object detection learns from regions: tag objects in your images with regions first.")
    counts = Counter(tag_id for example in snapshot for tag_id in example.tag_ids)
    short = [f"'{tag.name}' ({counts[tag.id]})" for tag in regular if counts[tag.id] < limits.MIN_IMAGES_PER_DETECTION_TAG]
    if short:
        raise DomainError(
            "BadRequestDetectionTrainingValidationFailed",
            f"Each tag needs regions in at least {limits.MIN_IMAGES_PER_DETECTION_TAG} images; too few for {', '.join(short)}.",
        )


def _validate_classification(project: Project, tags: list[Tag], snapshot: list[TrainingExample]) -> None:
    counts = Counter(tag_id for example in snapshot for tag_id in example.tag_ids)
    regular = [tag for tag in tags if tag.type != "Negative"]
    negative = next((tag for tag in tags if tag.type == "Negative"), None)
    # The Negative tag may stay empty; once it has images it needs as many as any tag to be learned and evaluated.
    short = [
        f"'{tag.name}' ({counts[tag.id]})"
        for tag in tags
        if counts[tag.id] < limits.MIN_IMAGES_PER_TAG and (tag.type != "Negative" or counts[tag.id] > 0)
    ]
    if short:
        raise DomainError(
            "BadRequestTrainingValidationFailed",
            f"Each tag needs at least {limits.MIN_IMAGES_PER_TAG} images; too few for {', '.join(short)}.",
        )
    classes = len(regular) + (1 if negative is not None and counts[negative.id] > 0 else 0)
    if project.classification_type == "Multilabel":
        if not regular:
            raise DomainError("BadRequestMultiLabelClassificationTrainingValidationFailed", "Add at least one tag to train.")
        everywhere = [tag.name for tag in regular if counts[tag.id] == len(snapshot)]
        if everywhere:
            raise DomainError(
                "BadRequestMultiLabelClassificationTrainingValidationFailed",
                f"Every image carries {everywhere}: add images without those tags (or a Negative tag) to learn them.",
            )
        return
    if classes < 2:
        raise DomainError(
            "BadRequestMultiClassClassificationTrainingValidationFailed",
            "A multiclass project needs at least two tags with images (the Negative tag counts).",
        )
    regular_ids = {tag.id for tag in regular}
    crowded = [example.image_id for example in snapshot if sum(tag_id in regular_ids for tag_id in example.tag_ids) > 1]
    if crowded:
        raise DomainError(
            "BadRequestMultiClassClassificationTrainingValidationFailed",
            f"In a multiclass project an image carries one tag; {len(crowded)} images carry several "
            f"(first: {crowded[0]}). Make the project Multilabel or remove the extra tags.",
        )


def fingerprint(project: Project, snapshot: list[TrainingExample], training_type: str) -> str:
    """What a model depends on, so an unchanged project is not trained twice."""
    material = {
        "training_type": training_type,
        "domain": project.domain_id,
        "classification": project.classification_type,
        "examples": [[example.image_id, list(example.tag_ids), [list(r) for r in example.regions]] for example in snapshot],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class QueuedTraining:
    iteration: Iteration
    job_id: str  # hand it to the job queue


@dataclass(frozen=True)
class TrainingPlan:
    """What a training would learn from, once every rule let it through."""

    snapshot: list[TrainingExample]
    fingerprint: str
    detection: bool


def plan_training(session: Session, project: Project, request: TrainingRequest, *, advanced_enabled: bool) -> TrainingPlan:
    """Every check TrainProject makes, and the snapshot it would train on; nothing is stored (a dry run stops here).

    ``advanced_enabled``: whether this service runs trainingType=Advanced (an operator's choice).
    """
    domain = find_domain(project.domain_id)
    detection = domain is not None and domain.type == OBJECT_DETECTION
    if request.training_type not in TRAINING_TYPES:
        raise DomainError("BadRequest", f"trainingType must be one of {TRAINING_TYPES}.")
    if request.training_type == "Advanced" and detection:
        raise DomainError("BadRequestDomainNotSupportedForAdvancedTraining",
                          "Advanced training of object detectors is not available; train with trainingType=Regular.")
    if request.training_type == "Advanced" and not advanced_enabled:
        raise DomainError(
            "BadRequestNotSupported",
            "Advanced training is off on this service: fine-tuning measured less accurate than Regular training "
            "(docs/models.md). Train with trainingType=Regular, or ask the operator to set OCV_ADVANCED_TRAINING_MAX_MINUTES.",
        )
    if request.notification_email is not None:
        require_storable_text(request.notification_email, "BadRequestInvalidEmailAddress", "notificationEmailAddress")
        if not _EMAIL.match(request.notification_email):
            raise DomainError("BadRequestInvalidEmailAddress", f"'{request.notification_email}' is not an email address.")
    iterations = list_iterations(session, project)
    if any(iteration.status == TRAINING for iteration in iterations):
        raise DomainError("BadRequestTrainingAlreadyInProgress", "This project is already training.")
    if len(iterations) >= limits.MAX_ITERATIONS_PER_PROJECT:
        raise DomainError(
            "BadRequestExceedIterationPerProjectLimit",
            f"A project keeps at most {limits.MAX_ITERATIONS_PER_PROJECT} iterations; delete an unpublished one first.",
        )

    tags = _training_tags(session, project, request.selected_tag_ids)
    snapshot = training_snapshot(session, project, tags, detection=detection)
    if detection:
        _validate_detection(session, tags, snapshot)
    else:
        _validate_classification(project, tags, snapshot)
    key = fingerprint(project, snapshot, request.training_type)
    last = next((it for it in reversed(iterations) if it.status == COMPLETED), None)
    if last is not None and last.training_fingerprint == key and not request.force_train:
        raise DomainError("BadRequestTrainingNotNeeded", "Nothing changed since the last iteration; pass forceTrain=true to train anyway.")
    return TrainingPlan(snapshot, key, detection)


def start_training(session: Session, project: Project, request: TrainingRequest, *, advanced_enabled: bool) -> QueuedTraining:
    """Validate, snapshot the training set and queue an iteration in status Training, with the job that trains it."""
    plan = plan_training(session, project, request, advanced_enabled=advanced_enabled)
    snapshot, key, detection = plan.snapshot, plan.fingerprint, plan.detection
    now = utcnow()
    number = 1 + (session.scalar(select(func.count()).select_from(Iteration).where(Iteration.project_id == project.id)) or 0)
    iteration = Iteration(
        project_id=project.id,
        name=_free_name(session, project, f"Iteration {number}"),
        status=TRAINING,
        created=now,
        last_modified=now,
        domain_id=project.domain_id,
        classification_type=project.classification_type,
        training_type=request.training_type,
        reserved_budget_in_hours=request.reserved_budget_in_hours,
        notification_email=request.notification_email,
        selected_tag_ids=request.selected_tag_ids,
        training_fingerprint=key,
    )
    session.add(iteration)
    session.flush()
    session.add_all(
        IterationImage(iteration_id=iteration.id, image_id=example.image_id, tag_ids=list(example.tag_ids),
                       regions=[list(region) for region in example.regions] if detection else None)
        for example in snapshot
    )
    job = jobs.queue_job(session, kind=jobs.TRAINING_JOB, subject_id=iteration.id, project_id=project.id)
    session.commit()
    return QueuedTraining(iteration, job.id)


def cancel_training(session: Session, iteration: Iteration) -> Iteration:
    """Stop a training: a queued one ends now, a running one at its next check; either way the iteration ends
    Failed with the reason ``canceled``."""
    if iteration.status != TRAINING:
        raise DomainError("BadRequest", f"The iteration is not training (its status is {iteration.status}).")
    job = jobs.latest_job(session, jobs.TRAINING_JOB, iteration.id)
    if job is None or jobs.request_cancel(session, job) or job.status in jobs.FINISHED:
        iteration.status = FAILED
        iteration.failure_reason = CANCELED_REASON
        iteration.last_modified = utcnow()
    session.commit()
    return iteration


def _free_name(session: Session, project: Project, wanted: str) -> str:
    taken = set(session.scalars(select(Iteration.name).where(Iteration.project_id == project.id)))
    name, suffix = wanted, 1
    while name in taken:
        suffix += 1
        name = f"{wanted} ({suffix})"
    return name


def rename_iteration(session: Session, project: Project, iteration: Iteration, name: str) -> Iteration:
    name = require_storable_text(name, "BadRequestIterationName", "An iteration name").strip()
    if not name or len(name) > limits.MAX_NAME_LENGTH:
        raise DomainError("BadRequestIterationName", f"An iteration name must be 1 to {limits.MAX_NAME_LENGTH} characters.")
    clash = select(Iteration.id).where(Iteration.project_id == project.id, Iteration.name == name, Iteration.id != iteration.id)
    if session.scalars(clash).first() is not None:
        raise DomainError("BadRequestIterationNameNotUnique", f"An iteration named '{name}' already exists.")
    iteration.name = name
    iteration.last_modified = utcnow()
    session.commit()
    return iteration


def delete_iteration(session: Session, iteration: Iteration) -> str | None:
    """Delete an unpublished iteration; returns the key of its model blob for the caller to remove."""
    if iteration.publish_name is not None:
        raise DomainError("BadRequestIterationIsPublished", "Unpublish the iteration before deleting it.")
    if iteration.status == TRAINING:
        raise DomainError("BadRequestTrainingAlreadyInProgress", "The iteration is still training.")
    model_key = iteration.model_key
    if iteration.training_type == "Advanced" and iteration.backbone is not None:
        # A fine-tuned backbone (Advanced) is this iteration's alone: so are its cached embeddings.
        session.execute(delete(ImageEmbedding).where(ImageEmbedding.backbone == iteration.backbone))
    session.delete(iteration)
    session.commit()
    return model_key


def publish_iteration(
    session: Session, project: Project, iteration: Iteration, publish_name: str, prediction_resource_id: str,
    *, overwrite: bool = False,
) -> Iteration:
    if iteration.status != COMPLETED:
        raise DomainError("BadRequestIterationIsNotTrained", "Only a completed iteration can be published.")
    if not publish_name or not _PUBLISH_NAME.match(publish_name):
        raise DomainError(
            "BadRequestInvalidPublishName",
            "A publish name is 1 to 255 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit.",
        )
    target = session.scalars(select(Resource).where(Resource.prediction_resource_id == prediction_resource_id)).first()
    # A resource publishes only to its own prediction resource: another account's key must never reach this model,
    # nor its callers' images land in this project's stored predictions. Another's id reads as unknown.
    if target is None or target.id != project.resource_id:
        raise DomainError("BadRequestInvalidPublishTarget", f"'{prediction_resource_id}' is not a prediction resource of this account.")
    holder = session.scalars(select(Iteration).where(
        Iteration.project_id == project.id, Iteration.publish_name == publish_name, Iteration.id != iteration.id
    )).first()
    if holder is not None and not overwrite:
        raise DomainError(
            "BadRequestInvalidPublishName",
            f"Another iteration of this project is published as '{publish_name}'; pass overwrite=true to replace it.",
        )
    if holder is not None:
        holder.publish_name = None
        holder.published_resource_id = None
        holder.last_modified = utcnow()
        # The name must be free before this iteration takes it (the pair is unique).
        session.flush()
    iteration.publish_name = publish_name
    iteration.published_resource_id = target.id
    iteration.original_publish_resource_id = prediction_resource_id
    iteration.last_modified = utcnow()
    session.commit()
    return iteration


def unpublish_iteration(session: Session, iteration: Iteration) -> Iteration:
    if iteration.publish_name is None:
        raise DomainError("BadRequestIterationNotPublished", "The iteration is not published.")
    iteration.publish_name = None
    iteration.published_resource_id = None
    iteration.last_modified = utcnow()
    session.commit()
    return iteration


def published_iteration(session: Session, resource: Resource, project_id: uuid.UUID | str, publish_name: str) -> Iteration:
    """The iteration a prediction resource serves under ``publish_name``; anything else is simply absent."""
    iteration = session.scalars(
        select(Iteration).where(
            Iteration.project_id == str(project_id),
            Iteration.publish_name == publish_name,
            Iteration.published_resource_id == resource.id,
        )
    ).first()
    if iteration is None:
        raise DomainError("NotFoundIteration", f"No iteration of project {project_id} is published as '{publish_name}' to this resource.")
    return iteration

"""Stored rows turned into Scenario's shapes: ids in base62, times in ISO 8601 with milliseconds."""

from __future__ import annotations

from datetime import datetime, timezone

from opencustomvision.api.deps import BlobLinks
from opencustomvision.api.scenario import ids, schemas
from opencustomvision.domain.scenario_models import DEFAULT_TYPE
from opencustomvision.domain.scenario_training import JOB_STATUSES
from opencustomvision.domain.training_images import TrainingImage
from opencustomvision.storage import models

_MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "GIF": "image/gif"}
# A classifier turns an image into its tags: Scenario's word for that is img2txt.
_CAPABILITIES = ["img2txt"]


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def present_training_image(found: TrainingImage, links: BlobLinks, *, original: bool) -> schemas.TrainingImage:
    image = found.image
    return schemas.TrainingImage(
        id=ids.encode(ids.ASSET, image.id),
        automatic_captioning=found.caption,
        created_at=iso(image.created),
        description=found.description,
        download_url=links.url(image.original_key if original else image.resized_key),
        name=found.name,
    )


def present_pair(pair: models.TrainingImagePair) -> schemas.TrainingImagePair:
    return schemas.TrainingImagePair(
        instruction=pair.instruction,
        source_id=ids.encode(ids.ASSET, pair.source_image_id) if pair.source_image_id else None,
        target_id=ids.encode(ids.ASSET, pair.target_image_id) if pair.target_image_id else None,
    )


def _progress(job: models.Job) -> schemas.TrainingProgress:
    moment = job.heartbeat_at or job.started or job.created
    return schemas.TrainingProgress(
        stage="running-train" if job.status == "running" else "queued-for-train",
        updated_at=moment.timestamp() * 1000, progress=job.progress,
        started_at=job.started.timestamp() * 1000 if job.started else None,
    )


def present_model(project: models.Project, *, status: str, image_count: int, links: BlobLinks, original: bool,
                  training_images: list[TrainingImage] | None = None,
                  pairs: list[models.TrainingImagePair] | None = None,
                  latest: models.Iteration | None = None, job: models.Job | None = None) -> schemas.Model:
    model_type = project.scenario_type or DEFAULT_TYPE
    stats = None
    if latest is not None:
        ended = latest.trained_at if latest.trained_at else (latest.last_modified if status != "training" else None)
        stats = schemas.TrainingStats(started_at=iso(latest.created), ended_at=iso(ended) if ended else None,
                                      train_duration=latest.training_seconds)
    return schemas.Model(
        id=ids.encode(ids.MODEL, project.id),
        capabilities=_CAPABILITIES,
        created_at=iso(project.created),
        custom=model_type == DEFAULT_TYPE,
        status=status,  # type: ignore[arg-type]
        training_images_number=image_count,
        type=model_type,
        updated_at=iso(project.last_modified),
        name=project.name,
        short_description=project.description or None,
        owner_id=project.resource_id,
        job_id=ids.encode(ids.JOB, job.id) if job is not None else None,
        training_progress=_progress(job) if job is not None and status == "training" else None,
        training_images=[present_training_image(t, links, original=original) for t in training_images]
        if training_images is not None else None,
        training_image_pairs=[present_pair(pair) for pair in pairs] if pairs is not None else None,
        training_stats=stats,
    )


def present_asset(asset: models.ScenarioAsset, links: BlobLinks, *, original: bool, caption: str | None = None) -> schemas.Asset:
    asset_id = ids.encode(ids.ASSET, asset.id)
    return schemas.Asset(
        id=asset_id,
        author_id=asset.resource_id,
        created_at=iso(asset.created),
        metadata=schemas.AssetMetadata(name=asset.name, width=asset.width, height=asset.height, size=asset.size),
        mime_type=_MIME_TYPES.get(asset.format, "application/octet-stream") if original else "image/jpeg",
        owner_id=asset.resource_id,
        properties=schemas.AssetProperties(size=asset.size, width=asset.width, height=asset.height, format=asset.format.lower()),
        updated_at=iso(asset.updated),
        url=links.url(asset.original_key if original else asset.resized_key),
        description=asset.description or None,
        automatic_captioning=caption,
        thumbnail=schemas.AssetThumbnail(asset_id=asset_id, url=links.url(asset.thumbnail_key)),
    )


def present_job(job: models.Job, iteration: models.Iteration | None) -> schemas.Job:
    history = [schemas.JobStatusHistory(date=iso(job.created), status="queued")]
    if job.started is not None:
        history.append(schemas.JobStatusHistory(date=iso(job.started), status="in-progress"))
    status = JOB_STATUSES.get(job.status, "failure")
    if job.finished is not None:
        history.append(schemas.JobStatusHistory(date=iso(job.finished), status=status))  # type: ignore[arg-type]
    model_id = ids.encode(ids.MODEL, job.project_id) if job.project_id else None
    error = job.error if job.status == "failed" else None
    if error is None and iteration is not None and iteration.status == "Failed" and job.status != "canceled":
        error = iteration.failure_reason
    return schemas.Job(
        job_id=ids.encode(ids.JOB, job.id),
        created_at=iso(job.created),
        updated_at=iso(job.finished or job.heartbeat_at or job.started or job.created),
        metadata=schemas.JobMetadata(error=error, output_model_id=model_id,
                                     input={"modelId": model_id, "iterationId": job.subject_id}),
        progress=job.progress,
        status=status,  # type: ignore[arg-type]
        status_history=history,
    )

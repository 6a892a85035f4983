"""Stored rows turned into the spec's response bodies."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from opencustomvision.api import schemas
from opencustomvision.api.deps import BlobLinks
from opencustomvision.domain.catalog import Domain
from opencustomvision.domain.images import Box, ImageCreateOutcome, RegionInput
from opencustomvision.domain.predictions import PredictionOutcome
from opencustomvision.storage import models


def present_domain(domain: Domain) -> schemas.Domain:
    return schemas.Domain(id=UUID(domain.id), name=domain.name, type=domain.type,  # type: ignore[arg-type]
                          exportable=domain.exportable, enabled=domain.enabled)


def present_project(project: models.Project) -> schemas.Project:
    augmentation = project.augmentation_methods
    return schemas.Project(
        id=UUID(project.id),
        name=project.name,
        description=project.description,
        settings=schemas.ProjectSettings(
            domain_id=UUID(project.domain_id),
            classification_type=project.classification_type,  # type: ignore[arg-type]
            target_export_platforms=list(project.target_export_platforms or []),  # type: ignore[arg-type]
            use_negative_set=project.use_negative_set,
            detection_parameters=project.detection_parameters,
            image_processing_settings=schemas.ImageProcessingSettings(augmentation_methods=augmentation)
            if augmentation is not None else None,
        ),
        created=project.created,
        last_modified=project.last_modified,
        dr_mode_enabled=False,
        status=project.status,  # type: ignore[arg-type]
    )


def present_tag(tag: models.Tag, image_count: int) -> schemas.Tag:
    return schemas.Tag(id=UUID(tag.id), name=tag.name, description=tag.description,
                       type=tag.type, image_count=image_count)  # type: ignore[arg-type]


def present_image(image: models.Image, links: BlobLinks) -> schemas.Image:
    return schemas.Image(
        id=UUID(image.id),
        created=image.created,
        width=image.width,
        height=image.height,
        resized_image_uri=links.url(image.resized_key),
        thumbnail_uri=links.url(image.thumbnail_key),
        original_image_uri=links.url(image.original_key),
        tags=[schemas.ImageTag(tag_id=UUID(t.tag_id), tag_name=t.tag.name, created=t.created) for t in image.tags],
        regions=[present_region(region) for region in image.regions],
        metadata={entry.key: entry.value for entry in image.metadata_entries},
    )


def present_region(region: models.Region) -> schemas.ImageRegion:
    return schemas.ImageRegion(region_id=UUID(region.id), tag_name=region.tag.name, created=region.created,
                               tag_id=UUID(region.tag_id), left=region.left, top=region.top,
                               width=region.width, height=region.height)


def present_region_entry(image_id: str, region: RegionInput) -> schemas.ImageRegionCreateEntry:
    return schemas.ImageRegionCreateEntry(image_id=UUID(image_id), tag_id=UUID(region.tag_id), left=region.left,
                                          top=region.top, width=region.width, height=region.height)


def present_create_summary(outcomes: list[ImageCreateOutcome], links: BlobLinks) -> schemas.ImageCreateSummary:
    return schemas.ImageCreateSummary(
        is_batch_successful=all(outcome.is_success for outcome in outcomes),
        images=[
            schemas.ImageCreateResult(
                source_url=outcome.source_url,
                status=outcome.status,
                image=present_image(outcome.image, links) if outcome.image is not None else None,
            )
            for outcome in outcomes
        ],
    )


def present_box(box: Box | Sequence[float]) -> schemas.BoundingBox:
    """A normalised (left, top, width, height), as the spec's BoundingBox."""
    return schemas.BoundingBox(left=box[0], top=box[1], width=box[2], height=box[3])


def present_predictions(ranked: list[tuple[str, float]], tags: dict[str, models.Tag], *, with_type: bool = True,
                        boxes: Sequence[Sequence[float]] | None = None) -> list[schemas.Prediction]:
    """Tags deleted since the model was trained are left out: a client could not look them up.

    ``boxes``: for object detection, the (left, top, width, height) of each ranked prediction."""
    shown_boxes: Sequence[Sequence[float] | None] = boxes if boxes is not None else [None] * len(ranked)
    return [
        schemas.Prediction(probability=probability, tag_id=UUID(tag_id), tag_name=tags[tag_id].name,
                           bounding_box=None if box is None else present_box(box),
                           tag_type=tags[tag_id].type if with_type else None)  # type: ignore[arg-type]
        for (tag_id, probability), box in zip(ranked, shown_boxes)
        if tag_id in tags
    ]


def present_prediction(outcome: PredictionOutcome, tags: dict[str, models.Tag], *, with_type: bool = True) -> schemas.ImagePrediction:
    return schemas.ImagePrediction(id=UUID(outcome.id), project=UUID(outcome.project_id), iteration=UUID(outcome.iteration_id),
                                   created=outcome.created,
                                   predictions=present_predictions(outcome.ranked, tags, with_type=with_type, boxes=outcome.boxes))


def present_stored_prediction(stored: models.StoredPrediction, tags: dict[str, models.Tag], links: BlobLinks) -> schemas.StoredImagePrediction:
    return schemas.StoredImagePrediction(
        resized_image_uri=links.url(stored.resized_key), thumbnail_uri=links.url(stored.thumbnail_key),
        original_image_uri=links.url(stored.original_key), domain=UUID(stored.domain_id), id=UUID(stored.id),
        project=UUID(stored.project_id), iteration=UUID(stored.iteration_id) if stored.iteration_id else None,
        created=stored.created,
        predictions=present_predictions([(row[0], row[1]) for row in stored.results], tags,
                                        boxes=[row[2:] for row in stored.results] if any(len(row) > 2 for row in stored.results) else None),
    )

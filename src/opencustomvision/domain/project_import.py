"""ImportProject: a new project, in the caller's resource, copied whole from the project an export token names.

Copied: the project's settings, its tags, every image (the original, resized and thumbnail files) with its tags,
regions and metadata, and each trained iteration with its model and the snapshot its metrics come from. Not
copied: publications (a prediction resource belongs to an account) and stored predictions. Every id is new; the
trained models are rewritten to name the new tags. Blobs are written first and the rows committed last, so a
failed import leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain import projects as project_rules
from opencustomvision.domain.exports import project_for_token, trained_iterations
from opencustomvision.domain.projects import project_blob_prefix
from opencustomvision.storage.atomic import commit_or_discard
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Image, ImageMetadata, ImageTag, Iteration, IterationImage, Project, Region, Resource, Tag, new_id

__all__ = ["ModelRetagger", "import_project"]

# Rewrites a stored model blob (classifier or detector, by the iteration) so its tag ids follow the mapping.
ModelRetagger = Callable[[Iteration, bytes, dict[str, str]], bytes]


def import_project(session: Session, blobs: BlobStore, resource: Resource, token: str, name: str | None,
                   retag_model: ModelRetagger) -> Project:
    source = project_for_token(session, token)
    copy = project_rules.create_project(
        session, resource.id, name=name or _free_copy_name(session, resource, source.name), description=source.description,
        domain_id=source.domain_id, classification_type=source.classification_type,
        target_export_platforms=list(source.target_export_platforms or []), commit=False,
    )
    copy.use_negative_set, copy.detection_parameters = source.use_negative_set, source.detection_parameters
    copy.augmentation_methods = dict(source.augmentation_methods) if source.augmentation_methods is not None else None
    written: list[str] = []
    try:
        tag_ids = _copy_tags(session, source, copy)
        image_ids = _copy_images(session, blobs, source, copy, tag_ids, written)
        for iteration in trained_iterations(session, source):
            _copy_iteration(session, blobs, iteration, copy, tag_ids, image_ids, retag_model, written)
    except BaseException:
        session.rollback()
        for key in written:
            blobs.delete(key)
        raise
    commit_or_discard(session, blobs, written)
    return copy


def _free_copy_name(session: Session, resource: Resource, name: str) -> str:
    taken = set(session.scalars(select(Project.name).where(Project.resource_id == resource.id)))
    if name not in taken:
        return name
    suffix = 1
    while f"{name} ({suffix})" in taken:
        suffix += 1
    return f"{name} ({suffix})"


def _copy_tags(session: Session, source: Project, copy: Project) -> dict[str, str]:
    mapping = {}
    for tag in session.scalars(select(Tag).where(Tag.project_id == source.id).order_by(Tag.created, Tag.id)):
        twin = Tag(id=new_id(), project_id=copy.id, name=tag.name, description=tag.description, type=tag.type, created=tag.created)
        session.add(twin)
        mapping[tag.id] = twin.id
    session.flush()
    return mapping


def _copy_folder_blob(blobs: BlobStore, key: str, old_folder: str, new_folder: str, written: list[str]) -> str:
    """Copy a blob of ``old_folder`` to the same place under ``new_folder``."""
    if not key.startswith(old_folder + "/"):
        raise ValueError(f"blob {key!r} is not under {old_folder!r}")
    new_key = new_folder + key[len(old_folder):]
    blobs.put(new_key, blobs.get(key))
    written.append(new_key)
    return new_key


def _copy_images(session: Session, blobs: BlobStore, source: Project, copy: Project, tag_ids: dict[str, str],
                 written: list[str]) -> dict[str, str]:
    mapping = {}
    images = session.scalars(select(Image).where(Image.project_id == source.id).order_by(Image.created, Image.id))
    for image in images:
        image_id = new_id()
        mapping[image.id] = image_id
        old_folder, new_folder = (f"{project_blob_prefix(project.id)}/images/{id_}" for project, id_ in ((source, image.id), (copy, image_id)))
        keys = [_copy_folder_blob(blobs, key, old_folder, new_folder, written) for key in (image.original_key, image.resized_key, image.thumbnail_key)]
        session.add(Image(id=image_id, project_id=copy.id, created=image.created, width=image.width, height=image.height,
                          format=image.format, sha256=image.sha256, original_key=keys[0], resized_key=keys[1], thumbnail_key=keys[2]))
        session.flush()
        session.add_all(ImageTag(image_id=image_id, tag_id=tag_ids[entry.tag_id], created=entry.created) for entry in image.tags)
        session.add_all(Region(id=new_id(), image_id=image_id, tag_id=tag_ids[region.tag_id], left=region.left, top=region.top,
                               width=region.width, height=region.height, created=region.created) for region in image.regions)
        session.add_all(ImageMetadata(image_id=image_id, key=entry.key, value=entry.value) for entry in image.metadata_entries)
    session.flush()
    return mapping


def _copy_iteration(session: Session, blobs: BlobStore, iteration: Iteration, copy: Project, tag_ids: dict[str, str],
                    image_ids: dict[str, str], retag_model: ModelRetagger, written: list[str]) -> None:
    assert iteration.model_key is not None
    twin_id = new_id()
    old_folder = f"{project_blob_prefix(iteration.project_id)}/iterations/{iteration.id}"
    model_key = _copy_folder_blob(blobs, iteration.model_key, old_folder, f"{project_blob_prefix(copy.id)}/iterations/{twin_id}", written)
    blobs.put(model_key, retag_model(iteration, blobs.get(model_key), tag_ids))
    session.add(Iteration(
        id=twin_id, project_id=copy.id, name=iteration.name, status=iteration.status, created=iteration.created,
        last_modified=iteration.last_modified, trained_at=iteration.trained_at, training_seconds=iteration.training_seconds,
        domain_id=iteration.domain_id, classification_type=iteration.classification_type, training_type=iteration.training_type,
        reserved_budget_in_hours=iteration.reserved_budget_in_hours, notification_email=None,
        selected_tag_ids=[tag_ids[t] for t in iteration.selected_tag_ids if t in tag_ids] if iteration.selected_tag_ids is not None else None,
        training_fingerprint=iteration.training_fingerprint, failure_reason=iteration.failure_reason, model_key=model_key,
        backbone=iteration.backbone,
    ))
    session.flush()
    for member in session.scalars(select(IterationImage).where(IterationImage.iteration_id == iteration.id)):
        if member.image_id not in image_ids:
            continue
        session.add(IterationImage(
            iteration_id=twin_id, image_id=image_ids[member.image_id], fold=member.fold,
            tag_ids=[tag_ids[t] for t in member.tag_ids if t in tag_ids],
            predictions=None if member.predictions is None else {tag_ids[t]: p for t, p in member.predictions.items() if t in tag_ids},
            regions=None if member.regions is None else [[tag_ids.get(str(r[0]), r[0]), *r[1:]] for r in member.regions],
            detections=None if member.detections is None else [[tag_ids.get(str(d[0]), d[0]), *d[1:]] for d in member.detections],
        ))
    session.flush()

"""Tags of a project: Regular, Negative (at most one) and GeneralProduct (at most one)."""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.errors import DomainError, not_found
from opencustomvision.domain.naming import bounded_description, unique_name
from opencustomvision.storage.models import ImageTag, IterationImage, Project, Tag, utcnow

TAG_TYPES = ("Regular", "Negative", "GeneralProduct")
_SINGLETON_TYPES = {"Negative": "BadRequestMultipleNegativeTag", "GeneralProduct": "BadRequestMultipleGeneralProductTag"}


def image_counts(session: Session, project_id: str, iteration_id: str | None = None) -> dict[str, int]:
    """Images per tag: in the workspace now, or in what an iteration trained on."""
    if iteration_id is not None:
        snapshot = session.scalars(select(IterationImage.tag_ids).where(IterationImage.iteration_id == iteration_id))
        return dict(Counter(tag_id for tag_ids in snapshot for tag_id in tag_ids))
    query = (
        select(ImageTag.tag_id, func.count())
        .join(Tag, Tag.id == ImageTag.tag_id)
        .where(Tag.project_id == project_id)
        .group_by(ImageTag.tag_id)
    )
    return {tag_id: count for tag_id, count in session.execute(query)}


def list_tags(session: Session, project: Project) -> list[Tag]:
    return list(session.scalars(select(Tag).where(Tag.project_id == project.id).order_by(Tag.created, Tag.name)))


def get_tag(session: Session, project: Project, tag_id: uuid.UUID | str) -> Tag:
    tag = session.get(Tag, str(tag_id))
    if tag is None or tag.project_id != project.id:
        raise not_found("NotFoundTag", "Tag", tag_id)
    return tag


def _check_name(session: Session, project: Project, name: str, *, except_id: str | None = None) -> str:
    return unique_name(session, Tag, Tag.project_id == project.id, name, invalid_code="BadRequestTagName",
                       taken_code="BadRequestTagNameNotUnique", except_id=except_id)


def _check_description(description: str) -> str:
    return bounded_description(description, "BadRequestTagDescription")


def _check_type(session: Session, project: Project, tag_type: str, *, except_id: str | None = None) -> str:
    if tag_type not in TAG_TYPES:
        raise DomainError("BadRequestTagType", f"Tag type '{tag_type}' is unknown.")
    if tag_type in _SINGLETON_TYPES:
        clash = select(Tag.id).where(Tag.project_id == project.id, Tag.type == tag_type)
        if except_id is not None:
            clash = clash.where(Tag.id != except_id)
        if session.scalars(clash).first() is not None:
            raise DomainError(_SINGLETON_TYPES[tag_type], f"A project has at most one {tag_type} tag.")
    return tag_type


def create_tag(
    session: Session, project: Project, *, name: str, description: str | None = None, tag_type: str | None = None
) -> Tag:
    count = session.scalar(select(func.count()).select_from(Tag).where(Tag.project_id == project.id)) or 0
    if count >= limits.MAX_TAGS_PER_PROJECT:
        raise DomainError("BadRequestExceedTagPerProjectLimit", f"A project holds at most {limits.MAX_TAGS_PER_PROJECT} tags.")
    tag = Tag(
        project_id=project.id,
        name=_check_name(session, project, name),
        description=_check_description(description or ""),
        type=_check_type(session, project, tag_type or "Regular"),
    )
    session.add(tag)
    project.last_modified = utcnow()
    session.commit()
    return tag


def update_tag(
    session: Session, project: Project, tag: Tag, *, name: str | None, description: str | None, tag_type: str | None
) -> Tag:
    if name is not None:
        tag.name = _check_name(session, project, name, except_id=tag.id)
    if description is not None:
        tag.description = _check_description(description)
    if tag_type is not None and tag_type != tag.type:
        tag.type = _check_type(session, project, tag_type, except_id=tag.id)
    project.last_modified = utcnow()
    session.commit()
    return tag


def delete_tag(session: Session, project: Project, tag: Tag) -> None:
    # Image tags and regions of this tag go with it (ON DELETE CASCADE).
    session.delete(tag)
    project.last_modified = utcnow()
    session.commit()

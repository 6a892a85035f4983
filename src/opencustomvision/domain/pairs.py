"""Training image pairs: a source image, a target image and the instruction that turns one into the other."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.naming import bounded_description
from opencustomvision.storage.models import Image, Project, TrainingImagePair, utcnow

MAX_PAIRS = 1024


@dataclass(frozen=True)
class PairInput:
    source_id: str | None
    target_id: str | None
    instruction: str | None


def list_pairs(session: Session, project: Project) -> list[TrainingImagePair]:
    query = select(TrainingImagePair).where(TrainingImagePair.project_id == project.id).order_by(TrainingImagePair.position)
    return list(session.scalars(query))


def replace_pairs(session: Session, project: Project, pairs: Sequence[PairInput]) -> list[TrainingImagePair]:
    """The model's pairs become ``pairs``; every image named must be one of its training images."""
    if len(pairs) > MAX_PAIRS:
        raise DomainError("BadRequestExceededBatchSize", f"At most {MAX_PAIRS} training image pairs per model.")
    named = {image_id for pair in pairs for image_id in (pair.source_id, pair.target_id) if image_id is not None}
    known = set(session.scalars(select(Image.id).where(Image.project_id == project.id, Image.id.in_(named)))) if named else set()
    unknown = sorted(named - known)
    if unknown:
        raise DomainError("BadRequestInvalidIds", f"Not a training image of this model: {unknown[0]}.")
    for pair in pairs:
        if pair.source_id is None and pair.target_id is None:
            raise DomainError("BadRequest", "A pair names a sourceId, a targetId or both.")
        if pair.instruction is not None:
            bounded_description(pair.instruction, "BadRequest")
    session.execute(delete(TrainingImagePair).where(TrainingImagePair.project_id == project.id))
    session.add_all(TrainingImagePair(project_id=project.id, position=position, source_image_id=pair.source_id,
                                      target_image_id=pair.target_id, instruction=pair.instruction)
                    for position, pair in enumerate(pairs))
    project.last_modified = utcnow()
    session.commit()
    return list_pairs(session, project)

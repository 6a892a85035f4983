"""What a Scenario client says about a training image: its original file name and its description."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.naming import bounded_description, require_storable_text
from opencustomvision.storage.models import Image, TrainingImageDetails

MAX_FILE_NAME_LENGTH = 256


def check_file_name(name: str | None) -> str:
    name = require_storable_text(name or "", "BadRequest", "A file name").strip()
    if len(name) > MAX_FILE_NAME_LENGTH:
        raise DomainError("BadRequest", f"A file name is at most {MAX_FILE_NAME_LENGTH} characters.")
    return name


def check_description(description: str) -> str:
    return bounded_description(description, "BadRequest")


def details_of(session: Session, image_ids: Sequence[str]) -> dict[str, TrainingImageDetails]:
    """The details of those images that have any (images uploaded the Custom Vision way have none)."""
    if not image_ids:
        return {}
    rows = session.scalars(select(TrainingImageDetails).where(TrainingImageDetails.image_id.in_(list(image_ids))))
    return {row.image_id: row for row in rows}


def set_description(session: Session, image: Image, description: str) -> TrainingImageDetails:
    """Set the user's description of an image; the caller commits."""
    details = session.get(TrainingImageDetails, image.id)
    if details is None:
        details = TrainingImageDetails(image_id=image.id, name="", description="")
        session.add(details)
    details.description = check_description(description)
    return details

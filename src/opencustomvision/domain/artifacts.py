"""GetArtifact: the project's files that its answers point at (images, export packages), by their path.

A path names a blob of the project, relative to the project's folder (``images/<id>/original``) or in full as
the answers' links show it (``projects/<project id>/...``). Anything else, including any other project's files
and any path that tries to leave the folder, is refused with the spec's code.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.projects import project_blob_prefix
from opencustomvision.storage.blobs import BlobStore, check_key
from opencustomvision.storage.models import Export, Image, Project

__all__ = ["artifact_key"]


def artifact_key(session: Session, blobs: BlobStore, project: Project, path: str) -> str:
    prefix = project_blob_prefix(project.id) + "/"
    relative = path.strip().lstrip("/")
    key = relative if relative.startswith(prefix) else prefix + relative
    try:
        check_key(key)
    except ValueError:
        raise _invalid(path) from None
    referenced = session.scalars(select(Image.id).where(
        Image.project_id == project.id, or_(Image.original_key == key, Image.resized_key == key, Image.thumbnail_key == key))).first()
    if referenced is None:
        referenced = session.scalars(select(Export.id).where(Export.project_id == project.id, Export.package_key == key)).first()
    if referenced is None:
        raise _invalid(path)
    return key


def _invalid(path: str) -> DomainError:
    return DomainError("BadRequestInvalidArtifactUri", f"'{path[:200]}' is not an artifact of this project.")

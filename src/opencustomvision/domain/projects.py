"""Projects: their settings and what may change about them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.catalog import CLASSIFICATION, DEFAULT_DOMAIN_ID, Domain, find_domain
from opencustomvision.domain.errors import DomainError, not_found
from opencustomvision.domain.naming import bounded_description, unique_name
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Image, Project, utcnow

CLASSIFICATION_TYPES = ("Multiclass", "Multilabel")
EXPORT_PLATFORMS = ("CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK")


@dataclass
class ProjectChanges:
    """What UpdateProject may change; ``None`` leaves a value as it is."""

    name: str | None = None
    description: str | None = None
    domain_id: str | None = None
    classification_type: str | None = None
    target_export_platforms: list[str] | None = None
    augmentation_methods: dict[str, bool] | None = field(default=None)


def project_blob_prefix(project_id: str) -> str:
    return f"projects/{project_id}"


def list_projects(session: Session, resource_id: str) -> list[Project]:
    query = select(Project).where(Project.resource_id == resource_id).order_by(Project.created)
    return list(session.scalars(query))


def get_project(session: Session, resource_id: str, project_id: uuid.UUID | str) -> Project:
    # Another resource's project answers exactly like a missing one.
    project = session.get(Project, str(project_id))
    if project is None or project.resource_id != resource_id:
        raise not_found("NotFoundProject", "Project", project_id)
    return project


def _check_name(session: Session, resource_id: str, name: str, *, except_id: str | None = None) -> str:
    return unique_name(session, Project, Project.resource_id == resource_id, name, invalid_code="BadRequestProjectName",
                       taken_code="BadRequestProjectNameNotUnique", except_id=except_id)


def _check_description(description: str) -> str:
    return bounded_description(description, "BadRequestProjectDescription")


def _check_domain(domain_id: str) -> Domain:
    domain = find_domain(domain_id)
    if domain is None or not domain.enabled:
        raise DomainError("BadRequestProjectUnknownDomain", f"Domain {domain_id} is unknown or not available.")
    return domain


def _check_classification_type(domain: Domain, classification_type: str | None) -> str | None:
    if domain.type != CLASSIFICATION:
        return None
    if classification_type is None:
        return "Multiclass"
    if classification_type not in CLASSIFICATION_TYPES:
        raise DomainError(
            "BadRequestProjectUnknownClassification", f"Classification type '{classification_type}' is unknown."
        )
    return classification_type


def _check_export_platforms(platforms: list[str]) -> list[str]:
    unknown = [platform for platform in platforms if platform not in EXPORT_PLATFORMS]
    if unknown:
        raise DomainError("BadRequestProjectUnsupportedExportPlatform", f"Unknown export platforms: {unknown}.")
    return list(dict.fromkeys(platforms))


def create_project(
    session: Session,
    resource_id: str,
    *,
    name: str,
    description: str | None = None,
    domain_id: str | None = None,
    classification_type: str | None = None,
    target_export_platforms: list[str] | None = None,
    commit: bool = True,
) -> Project:
    """A new project; ``commit=False`` leaves it in the caller's transaction (flushed)."""
    count = session.scalar(select(func.count()).select_from(Project).where(Project.resource_id == resource_id))
    if count is not None and count >= limits.MAX_PROJECTS_PER_RESOURCE:
        raise DomainError("BadRequestExceedProjectLimit", f"A resource holds at most {limits.MAX_PROJECTS_PER_RESOURCE} projects.")
    domain = _check_domain(domain_id or DEFAULT_DOMAIN_ID)
    now = utcnow()
    project = Project(
        resource_id=resource_id,
        name=_check_name(session, resource_id, name),
        description=_check_description(description or ""),
        domain_id=domain.id,
        classification_type=_check_classification_type(domain, classification_type),
        target_export_platforms=_check_export_platforms(target_export_platforms or []),
        use_negative_set=True,
        created=now,
        last_modified=now,
    )
    session.add(project)
    if commit:
        session.commit()
    else:
        session.flush()
    return project


def update_project(session: Session, project: Project, changes: ProjectChanges) -> Project:
    if changes.name is not None:
        project.name = _check_name(session, project.resource_id, changes.name, except_id=project.id)
    if changes.description is not None:
        project.description = _check_description(changes.description)
    domain = _check_domain(changes.domain_id or project.domain_id)
    current = find_domain(project.domain_id)
    if current is not None and domain.type != current.type and _has_images(session, project.id):
        raise DomainError(
            "BadRequestProjectUnsupportedDomainTypeChange",
            f"Cannot change a project with images from {current.type} to {domain.type}.",
        )
    project.domain_id = domain.id
    project.classification_type = _check_classification_type(
        domain, changes.classification_type or project.classification_type
    )
    platforms = changes.target_export_platforms
    project.target_export_platforms = _check_export_platforms(
        platforms if platforms is not None else list(project.target_export_platforms or [])
    )
    if changes.augmentation_methods is not None:
        project.augmentation_methods = dict(changes.augmentation_methods)
    project.last_modified = utcnow()
    session.commit()
    return project


def _has_images(session: Session, project_id: str) -> bool:
    return session.scalars(select(Image.id).where(Image.project_id == project_id).limit(1)).first() is not None


def delete_project(session: Session, blobs: BlobStore, project: Project) -> None:
    session.delete(project)
    session.commit()
    # Rows go first: a crash in between leaves unreachable blobs, never rows pointing at missing files.
    blobs.delete_prefix(project_blob_prefix(project.id))

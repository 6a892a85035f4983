"""Exports: of an iteration to a platform (a job makes the package), and of a whole project (a token to import it).

Knows nothing of HTTP. The packages themselves are made by ``ml/export`` in a child process (jobs/exports.py).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from opencustomvision.domain import jobs
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import COMPLETED, TRAINING, list_iterations
from opencustomvision.domain.projects import project_blob_prefix
from opencustomvision.ml.export import platforms
from opencustomvision.storage.models import Export, Image, Iteration, Project, ProjectExportToken, Region, Tag, utcnow

__all__ = [
    "DONE",
    "EXPORTING",
    "EXPORT_JOB",
    "FAILED",
    "ProjectExportSummary",
    "QueuedExport",
    "exportable_platforms",
    "exports_blob_prefix",
    "export_project",
    "is_outdated",
    "list_exports",
    "project_for_token",
    "start_export",
]

EXPORTING, DONE, FAILED = "Exporting", "Done", "Failed"
EXPORT_JOB = "export"
# How long an ExportProject token imports the project.
TOKEN_LIFETIME = timedelta(days=7)
# ImportProject's estimate: copying the rows and blobs of one image, and of one trained model.
_IMPORT_MS_PER_IMAGE = 20
_IMPORT_MS_PER_ITERATION = 200


def exports_blob_prefix(iteration: Iteration) -> str:
    return f"{project_blob_prefix(iteration.project_id)}/iterations/{iteration.id}/exports"


def package_key(export: Export, iteration: Iteration) -> str:
    return f"{exports_blob_prefix(iteration)}/{export.id}.zip"


def exportable_platforms(iteration: Iteration) -> list[str]:
    """Every platform this server can produce for the iteration (none until it is trained)."""
    if iteration.status != COMPLETED or iteration.model_key is None:
        return []
    return platforms.available_platforms()


def resolve_target(platform: str, flavor: str | None) -> platforms.Target:
    """The requested target, or the spec's code saying why it cannot be made here."""
    try:
        target = platforms.resolve(platform, flavor)
    except platforms.UnknownPlatform as error:
        raise DomainError("ErrorExporterInvalidPlatform", str(error)) from None
    except (platforms.UnknownFlavor, platforms.UnsupportedPlatform) as error:
        raise DomainError("BadRequestProjectUnsupportedExportPlatform", str(error)) from None
    missing = platforms.missing_modules(target)
    if missing:
        raise DomainError(
            "BadRequestProjectUnsupportedExportPlatform",
            f"Exporting to {target.platform}{f' ({target.flavor})' if target.flavor else ''} needs the optional "
            f"'{platforms.EXPORT_EXTRA}' extra, not installed on this server (missing: {', '.join(missing)}); "
            f"the operator installs it with: pip install 'opencustomvision[{platforms.EXPORT_EXTRA}]'.",
        )
    return target


@dataclass(frozen=True)
class QueuedExport:
    export: Export
    job_id: str  # hand it to the job queue
    replaced_packages: list[str]  # blobs of earlier exports of the same target, for the caller to delete


def start_export(session: Session, iteration: Iteration, platform: str, flavor: str | None) -> QueuedExport:
    """Queue an export of a trained iteration; an earlier finished export of the same target is replaced."""
    target = resolve_target(platform, flavor)
    if iteration.status == TRAINING:
        raise DomainError("BadRequestExportWhileTraining", "The iteration is still training; export it once it has completed.")
    if iteration.status != COMPLETED or iteration.model_key is None:
        raise DomainError("BadRequestExportValidationFailed", f"Only a trained iteration can be exported (its status is {iteration.status}).")
    earlier = list(session.scalars(select(Export).where(
        Export.iteration_id == iteration.id, Export.platform == target.platform, _same_flavor(target.flavor))))
    if any(export.status == EXPORTING for export in earlier):
        raise DomainError("BadRequestExportAlreadyInProgress", f"An export to {target.key} is already running for this iteration.")
    replaced = [export.package_key for export in earlier if export.package_key]
    for export in earlier:
        session.delete(export)
    export = Export(iteration_id=iteration.id, project_id=iteration.project_id, platform=target.platform, flavor=target.flavor,
                    status=EXPORTING, exporter_version=platforms.EXPORTER_VERSION, created=utcnow())
    session.add(export)
    session.flush()
    job = jobs.queue_job(session, kind=EXPORT_JOB, subject_id=export.id, project_id=iteration.project_id)
    session.commit()
    return QueuedExport(export, job.id, replaced)


def _same_flavor(flavor: str | None):  # type: ignore[no-untyped-def]
    return Export.flavor.is_(None) if flavor is None else Export.flavor == flavor


def list_exports(session: Session, iteration: Iteration) -> list[Export]:
    return list(session.scalars(select(Export).where(Export.iteration_id == iteration.id).order_by(Export.created)))


def is_outdated(export: Export) -> bool:
    """Made by an earlier version of the exporter: exporting again gives the current package."""
    return export.exporter_version != platforms.EXPORTER_VERSION


def finish_export(session: Session, export: Export, iteration: Iteration, *, size: int) -> str:
    """Mark an export done; returns the key its package must be stored under (before the caller commits)."""
    key = package_key(export, iteration)
    export.status, export.package_key, export.package_bytes, export.finished = DONE, key, size, utcnow()
    return key


def fail_export(export: Export, reason: str) -> None:
    export.status, export.failure_reason, export.finished = FAILED, reason[:2000], utcnow()


# --- projects ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectExportSummary:
    iteration_count: int
    image_count: int
    tag_count: int
    region_count: int
    estimated_import_ms: int
    token: str


def trained_iterations(session: Session, project: Project) -> list[Iteration]:
    return [iteration for iteration in list_iterations(session, project) if iteration.status == COMPLETED and iteration.model_key]


def export_project(session: Session, project: Project) -> ProjectExportSummary:
    """A token anyone holding it may import a copy of the project with (in any resource), and what it holds."""
    images = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project.id)) or 0
    tags = session.scalar(select(func.count()).select_from(Tag).where(Tag.project_id == project.id)) or 0
    regions = session.scalar(select(func.count()).select_from(Region).join(Image, Region.image_id == Image.id)
                             .where(Image.project_id == project.id)) or 0
    iterations = len(trained_iterations(session, project))
    now = utcnow()
    session.execute(delete(ProjectExportToken).where(ProjectExportToken.expires < now))
    token = secrets.token_urlsafe(32)
    session.add(ProjectExportToken(token_hash=_token_hash(token), project_id=project.id, created=now, expires=now + TOKEN_LIFETIME))
    session.commit()
    return ProjectExportSummary(iterations, images, tags, regions,
                                images * _IMPORT_MS_PER_IMAGE + iterations * _IMPORT_MS_PER_ITERATION, token)


def project_for_token(session: Session, token: str) -> Project:
    """The project a valid, unexpired token was made for (of whichever resource)."""
    stored = session.get(ProjectExportToken, _token_hash(token)) if token else None
    project = session.get(Project, stored.project_id) if stored is not None and stored.expires >= utcnow() else None
    if project is None:
        raise DomainError("BadRequestInvalidImportToken", "The import token is invalid or has expired; export the project again for a new one.")
    return project


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

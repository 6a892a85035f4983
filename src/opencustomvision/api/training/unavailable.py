"""Operations of the spec that later work will deliver. They answer a clear CustomVisionError, not a bare 404."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from opencustomvision.api.deps import TrainingResource
from opencustomvision.domain.errors import DomainError

router = APIRouter()

PENDING_OPERATIONS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/projects/{project_id:uuid}/artifacts", "GetArtifact"),
    ("GET", "/projects/{project_id:uuid}/export", "ExportProject"),
    ("POST", "/projects/import", "ImportProject"),
    ("GET", "/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/export", "GetExports"),
    ("POST", "/projects/{project_id:uuid}/iterations/{iteration_id:uuid}/export", "ExportIteration"),
)


def _pending(operation: str) -> Callable[..., None]:
    def handler(_: TrainingResource) -> None:
        raise DomainError("BadRequestNotSupported", f"{operation} is not available in this version of OpenCustomVision yet.")

    handler.__name__ = operation
    return handler


for method, path, operation in PENDING_OPERATIONS:
    router.add_api_route(path, _pending(operation), methods=[method], name=operation)

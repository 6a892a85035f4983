"""Scenario models: a model IS a project of the resource, seen through Scenario's shapes.

Its status is that of its latest training (iteration); its training images are the project's images.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import COMPLETED, FAILED, TRAINING
from opencustomvision.domain.naming import require_storable_text
from opencustomvision.domain.projects import ProjectChanges, create_project, update_project
from opencustomvision.storage.models import Image, Iteration, Project, utcnow

NEW, TRAINING_STATUS, TRAINED, FAILED_STATUS, TRAINING_CANCELED = "new", "training", "trained", "failed", "training-canceled"
# The reason a canceled training's iteration ends Failed with, in both APIs.
CANCELED_REASON = "canceled"
DEFAULT_TYPE = "custom"
UNTITLED = "Untitled model"
# The model types Scenario's API accepts (its SDK's ``type`` literal). Whatever the type, training here
# trains the project's image classifier (or detector): docs/scenario.md.
MODEL_TYPES = frozenset({
    "custom", "elevenlabs-voice", "flux.1", "flux.1-composition", "flux.1-kontext-dev", "flux.1-kontext-lora",
    "flux.1-krea-dev", "flux.1-krea-lora", "flux.1-lora", "flux.1-pro", "flux.1.1-pro-ultra", "flux.2-dev-edit-lora",
    "flux.2-dev-lora", "flux.2-klein-4b-edit-lora", "flux.2-klein-4b-lora", "flux.2-klein-9b-edit-lora",
    "flux.2-klein-9b-lora", "flux.2-klein-base-4b-edit-lora", "flux.2-klein-base-4b-lora",
    "flux.2-klein-base-9b-edit-lora", "flux.2-klein-base-9b-lora", "flux1.1-pro", "gpt-image-1",
    "qwen-image-2512-lora", "qwen-image-edit-2509-lora", "qwen-image-edit-2511-lora", "qwen-image-edit-lora",
    "qwen-image-lora", "zimage-de-turbo-lora", "zimage-lora", "zimage-turbo-lora",
})


def _check_type(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise DomainError("BadRequest", f"type must be one of {', '.join(sorted(MODEL_TYPES))}.")
    return model_type


def status_of(latest: Iteration | None) -> str:
    """A model's status, from its latest iteration (None: never trained)."""
    if latest is None:
        return NEW
    if latest.status == TRAINING:
        return TRAINING_STATUS
    if latest.status == COMPLETED:
        return TRAINED
    if latest.status == FAILED and latest.failure_reason == CANCELED_REASON:
        return TRAINING_CANCELED
    return FAILED_STATUS


def latest_iterations(session: Session, project_ids: Sequence[str]) -> dict[str, Iteration]:
    """The most recent iteration of each project that has one."""
    if not project_ids:
        return {}
    newest = (select(Iteration.project_id, func.max(Iteration.created).label("created"))
              .where(Iteration.project_id.in_(list(project_ids))).group_by(Iteration.project_id).subquery())
    query = select(Iteration).join(newest, (Iteration.project_id == newest.c.project_id) & (Iteration.created == newest.c.created))
    return {iteration.project_id: iteration for iteration in session.scalars(query)}


def model_status(session: Session, project: Project) -> str:
    return status_of(latest_iterations(session, [project.id]).get(project.id))


def image_counts(session: Session, project_ids: Sequence[str]) -> dict[str, int]:
    if not project_ids:
        return {}
    query = select(Image.project_id, func.count()).where(Image.project_id.in_(list(project_ids))).group_by(Image.project_id)
    return {project_id: count for project_id, count in session.execute(query)}


def _free_untitled_name(session: Session, resource_id: str) -> str:
    taken = set(session.scalars(select(Project.name).where(Project.resource_id == resource_id, Project.name.like(f"{UNTITLED}%"))))
    name, number = UNTITLED, 1
    while name in taken:
        number += 1
        name = f"{UNTITLED} ({number})"
    return name


def create_model(session: Session, resource_id: str, *, name: str | None, short_description: str | None,
                 model_type: str | None) -> Project:
    """A new project (the default domain, Multiclass), seen as a Scenario model of type ``model_type``."""
    chosen_type = _check_type(model_type or DEFAULT_TYPE)
    if name is not None:
        require_storable_text(name, "BadRequestProjectName", "A model name")
    project = create_project(session, resource_id, name=name if name and name.strip() else _free_untitled_name(session, resource_id),
                             description=short_description)
    project.scenario_type = chosen_type
    session.commit()
    return project


def update_model(session: Session, project: Project, *, name: str | None, short_description: str | None,
                 model_type: str | None) -> Project:
    if model_type is not None and model_type != (project.scenario_type or DEFAULT_TYPE):
        _check_type(model_type)
        if model_status(session, project) != NEW:
            raise DomainError("BadRequest", "The type of a model can only change while its status is new.")
        project.scenario_type = model_type
        project.last_modified = utcnow()
    return update_project(session, project, ProjectChanges(name=name, description=short_description))

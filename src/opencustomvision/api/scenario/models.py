"""/v1/models: Scenario models, which are the resource's projects."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from opencustomvision.api.deps import Links, ServicesDep, SessionDep
from opencustomvision.api.scenario import schemas
from opencustomvision.api.scenario.auth import ScenarioResource
from opencustomvision.api.scenario.common import OriginalAssets, PaginationToken, answer, model_project
from opencustomvision.api.scenario.presenters import present_job, present_model
from opencustomvision.domain import scenario_models, scenario_training
from opencustomvision.domain.pairs import list_pairs
from opencustomvision.domain.paging import page
from opencustomvision.domain.projects import delete_project, list_projects
from opencustomvision.domain.training_images import list_training_images
from opencustomvision.storage.models import Project

router = APIRouter()
# GET /models shows the first few training images of each model, as Scenario does; GET /models/{id} all.
LISTED_TRAINING_IMAGES = 3
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=500)]


def model_view(session: SessionDep, services: ServicesDep, links: Links, project: Project, *, original: bool,
               image_limit: int | None = None) -> schemas.Model:
    latest = scenario_models.latest_iterations(session, [project.id]).get(project.id)
    training_images = list_training_images(session, services.captioner.labeler, project, limit=image_limit)
    return present_model(
        project, status=scenario_models.status_of(latest),
        image_count=scenario_models.image_counts(session, [project.id]).get(project.id, 0),
        links=links, original=original, training_images=training_images, pairs=list_pairs(session, project),
        latest=latest, job=scenario_training.training_job_of(session, latest),
    )


@router.post("/models")
def create_model(body: schemas.ModelCreateBody, session: SessionDep, services: ServicesDep, links: Links,
                 resource: ScenarioResource, original_assets: OriginalAssets = False) -> Response:
    project = scenario_models.create_model(session, resource.id, name=body.name, short_description=body.short_description,
                                           model_type=body.type)
    services.captioner.warm_up()  # its training images will want captions: have the backbone ready
    return answer({"model": model_view(session, services, links, project, original=original_assets)})


@router.get("/models")
def list_models(session: SessionDep, services: ServicesDep, links: Links, resource: ScenarioResource,
                page_size: PageSize = 100, pagination_token: PaginationToken = None,
                original_assets: OriginalAssets = False) -> Response:
    projects = list(reversed(list_projects(session, resource.id)))  # newest first, as Scenario lists
    chosen, token = page(projects, pagination_token, page_size, error_code="BadRequest")
    models = [model_view(session, services, links, project, original=original_assets, image_limit=LISTED_TRAINING_IMAGES)
              for project in chosen]
    return answer({"models": models, "nextPaginationToken": token})


@router.get("/models/{model_id}")
def get_model(model_id: str, session: SessionDep, services: ServicesDep, links: Links, resource: ScenarioResource,
              original_assets: OriginalAssets = False) -> Response:
    project = model_project(session, resource, model_id)
    return answer({"model": model_view(session, services, links, project, original=original_assets)})


@router.put("/models/{model_id}")
def update_model(model_id: str, body: schemas.ModelUpdateBody, session: SessionDep, services: ServicesDep, links: Links,
                 resource: ScenarioResource, original_assets: OriginalAssets = False) -> Response:
    project = model_project(session, resource, model_id)
    scenario_models.update_model(session, project, name=body.name, short_description=body.short_description,
                                 model_type=body.type)
    return answer({"model": model_view(session, services, links, project, original=original_assets)})


@router.delete("/models/{model_id}")
def delete_model(model_id: str, session: SessionDep, services: ServicesDep, resource: ScenarioResource) -> Response:
    delete_project(session, services.blobs, model_project(session, resource, model_id))
    return answer({})


@router.put("/models/{model_id}/train")
def train_model(model_id: str, session: SessionDep, services: ServicesDep, links: Links, resource: ScenarioResource,
                body: schemas.TrainBody | None = None,
                dry_run: Annotated[Literal["true", "api"] | None, Query(alias="dryRun")] = None,
                original_assets: OriginalAssets = False) -> Response:
    """Train the project as TrainProject does; Scenario's training ``parameters`` do not apply to its classifier."""
    project = model_project(session, resource, model_id)
    advanced_enabled = services.settings.advanced_training_max_seconds > 0
    training = scenario_training.train_model(session, project, advanced_enabled=advanced_enabled, dry_run=dry_run is not None)
    if training is None:  # Scenario answers an estimate with 269; training here costs no credits
        return answer({"model": model_view(session, services, links, project, original=original_assets),
                       "creativeUnitsCost": 0, "creativeUnitsDiscount": 0}, status=269)
    services.jobs.submit(training.job.id)
    return answer({"model": model_view(session, services, links, project, original=original_assets),
                   "job": present_job(training.job, training.iteration)})


@router.post("/models/{model_id}/train/action")
def train_action(model_id: str, body: schemas.TrainActionBody, session: SessionDep, services: ServicesDep, links: Links,
                 resource: ScenarioResource) -> Response:
    project = model_project(session, resource, model_id)
    scenario_training.cancel_model_training(session, project)
    return answer({"model": model_view(session, services, links, project, original=False)})

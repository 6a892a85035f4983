"""/v1/models/{modelId}/training-images: the model's training images, which are its project's images."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from opencustomvision.api.deps import Links, ServicesDep, SessionDep
from opencustomvision.api.scenario import ids, schemas
from opencustomvision.api.scenario.auth import ScenarioResource
from opencustomvision.api.scenario.common import OriginalAssets, answer, model_project
from opencustomvision.api.scenario.presenters import present_pair, present_training_image
from opencustomvision.domain import pairs, training_images
from opencustomvision.domain.pairs import PairInput
from opencustomvision.domain.training_images import TrainingImageSource

router = APIRouter()


def _source(body: schemas.TrainingImageBody, *, replacing: bool = False) -> tuple[TrainingImageSource, list[str]]:
    """The body as the domain takes it, checked before its asset ids are read (a refusal names the real fault)."""
    source = TrainingImageSource(asset_id=body.asset_id, asset_ids=body.asset_ids, data=body.data, name=body.name,
                                 preset=body.preset, description=body.description)
    if source.gives_image or not replacing:
        training_images.check_source(source, batch_allowed=not replacing)
    named = body.asset_ids if body.asset_ids is not None else ([body.asset_id] if body.asset_id is not None else [])
    return source, [ids.decode(ids.ASSET, asset_id, what="Asset") for asset_id in named]


@router.post("/models/{model_id}/training-images")
def add_training_images(model_id: str, body: schemas.TrainingImageBody, session: SessionDep, services: ServicesDep,
                        links: Links, resource: ScenarioResource, original_assets: OriginalAssets = False) -> Response:
    project = model_project(session, resource, model_id)
    source, asset_ids = _source(body)
    added = training_images.add_training_images(session, services.blobs, services.captioner.labeler, resource, project,
                                                source, asset_ids=asset_ids)
    presented = [present_training_image(found, links, original=original_assets) for found in added]
    # Scenario answers one trainingImage; a batch also gets all of them (the SDK keeps unknown fields).
    payload: dict[str, object] = {"trainingImage": presented[0]}
    if body.asset_ids is not None:
        payload["trainingImages"] = presented
    return answer(payload)


@router.put("/models/{model_id}/training-images/pairs")
def replace_pairs(model_id: str, body: list[schemas.PairBody], session: SessionDep, resource: ScenarioResource) -> Response:
    project = model_project(session, resource, model_id)
    wanted = [PairInput(source_id=ids.decode(ids.ASSET, pair.source_id, what="Training image") if pair.source_id else None,
                        target_id=ids.decode(ids.ASSET, pair.target_id, what="Training image") if pair.target_id else None,
                        instruction=pair.instruction) for pair in body]
    stored = pairs.replace_pairs(session, project, wanted)
    return answer({"count": len(stored), "pairs": [present_pair(pair) for pair in stored]})


@router.put("/models/{model_id}/training-images/{training_image_id}")
def replace_training_image(model_id: str, training_image_id: str, body: schemas.TrainingImageBody, session: SessionDep,
                           services: ServicesDep, links: Links, resource: ScenarioResource,
                           original_assets: OriginalAssets = False) -> Response:
    project = model_project(session, resource, model_id)
    image_id = ids.decode(ids.ASSET, training_image_id, what="Training image")
    source, asset_ids = _source(body, replacing=True)
    replaced = training_images.replace_training_image(session, services.blobs, services.captioner.labeler, resource,
                                                      project, image_id, source, asset_ids=asset_ids)
    return answer({"trainingImage": present_training_image(replaced, links, original=original_assets)})


@router.delete("/models/{model_id}/training-images/{training_image_id}")
def delete_training_image(model_id: str, training_image_id: str, session: SessionDep, services: ServicesDep,
                          resource: ScenarioResource) -> Response:
    project = model_project(session, resource, model_id)
    image_id = ids.decode(ids.ASSET, training_image_id, what="Training image")
    training_images.delete_training_image(session, services.blobs, project, image_id)
    return answer({})

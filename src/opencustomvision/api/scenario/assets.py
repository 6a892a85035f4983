"""/v1/assets: images uploaded to the resource, to be used as training images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from opencustomvision.api.deps import Links, ServicesDep, SessionDep
from opencustomvision.api.scenario import ids, schemas
from opencustomvision.api.scenario.auth import ScenarioResource
from opencustomvision.api.scenario.common import OriginalAssets, PaginationToken, answer
from opencustomvision.api.scenario.presenters import present_asset
from opencustomvision.domain import assets
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.paging import page

router = APIRouter()
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=100)]


@router.post("/assets")
def upload_asset(body: schemas.AssetUploadBody, session: SessionDep, services: ServicesDep, links: Links,
                 resource: ScenarioResource, original_assets: OriginalAssets = False) -> Response:
    if body.image is None:
        raise DomainError("BadRequest", "Give the image (base64, or a data URL); canvases are not supported here.")
    asset = assets.create_asset(session, services.blobs, resource, name=body.name, image_text=body.image)
    # Embedded (and captioned) in the background, so that a model taking it as a training image has its caption.
    services.captioner.submit_assets([asset.id])
    return answer({"asset": present_asset(asset, links, original=original_assets)})


@router.get("/assets")
def list_assets(session: SessionDep, links: Links, resource: ScenarioResource, page_size: PageSize = 50,
                pagination_token: PaginationToken = None, original_assets: OriginalAssets = False) -> Response:
    chosen, token = page(assets.list_assets(session, resource), pagination_token, page_size, error_code="BadRequest")
    captions = assets.asset_captions(session, [asset.id for asset in chosen])
    return answer({"assets": [present_asset(asset, links, original=original_assets, caption=captions.get(asset.id))
                              for asset in chosen], "nextPaginationToken": token})


@router.get("/assets/{asset_id}")
def get_asset(asset_id: str, session: SessionDep, links: Links, resource: ScenarioResource,
              original_assets: OriginalAssets = False) -> Response:
    asset = assets.get_asset(session, resource, ids.decode(ids.ASSET, asset_id, what="Asset"))
    caption = assets.asset_captions(session, [asset.id]).get(asset.id)
    return answer({"asset": present_asset(asset, links, original=original_assets, caption=caption)})


@router.put("/assets/{asset_id}")
def update_asset(asset_id: str, body: schemas.AssetUpdateBody, session: SessionDep, links: Links,
                 resource: ScenarioResource, original_assets: OriginalAssets = False) -> Response:
    asset = assets.get_asset(session, resource, ids.decode(ids.ASSET, asset_id, what="Asset"))
    assets.update_asset(session, asset, name=body.name, description=body.description)
    caption = assets.asset_captions(session, [asset.id]).get(asset.id)
    return answer({"asset": present_asset(asset, links, original=original_assets, caption=caption)})


@router.delete("/assets")
def delete_assets(body: schemas.AssetDeleteBody, session: SessionDep, services: ServicesDep,
                  resource: ScenarioResource) -> Response:
    if not body.asset_ids:
        raise DomainError("BadRequestRequiredParamIsNull", "Give the assetIds to delete.")
    if len(body.asset_ids) > assets.MAX_ASSETS_PER_DELETE:
        raise DomainError("BadRequestExceededBatchSize", f"At most {assets.MAX_ASSETS_PER_DELETE} assets per request.")
    # An id that is not one of ours names nothing of this resource: like another resource's, it deletes nothing.
    decoded = [decoded_id for asset_id in body.asset_ids if (decoded_id := ids.decoded_or_none(ids.ASSET, asset_id))]
    if decoded:
        assets.delete_assets(session, services.blobs, resource, decoded)
    return answer({})

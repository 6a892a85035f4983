"""Assets: images a Scenario client uploads to its resource, to use as training images of its models.

An asset is checked and prepared (decoded, resized, thumbnailed) once, when it is uploaded; a model that
takes it as a training image stores that prepared image as one of its project's images.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence

import numpy as np

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.captions import caption_for
from opencustomvision.domain.catalog import DEFAULT_DOMAIN_ID, backbone_for
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.naming import bounded_description, require_storable_text
from opencustomvision.imaging.decode import (
    ImageFormatError, ImageLimits, ImageSizeError, PreparedImage, prepare_image, restore_prepared,
)
from opencustomvision.storage.atomic import commit_or_discard, put_all
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import (
    ImageEmbedding, Resource, ScenarioAsset, ScenarioAssetEmbedding, TrainingImageDetails, utcnow,
)
from opencustomvision.storage.upsert import insert_missing

MAX_ASSETS_PER_DELETE = 100
# Assets are embedded ahead of time with the backbone of the models Scenario clients create (the default domain).
SCENARIO_BACKBONE = backbone_for(DEFAULT_DOMAIN_ID)
MAX_ASSET_NAME_LENGTH = 256
# Base64 of the largest image accepted, and a little room for a data URL's header.
_MAX_ENCODED_LENGTH = 4 * -(-limits.MAX_IMAGE_BYTES // 3) + 256
_DATA_URL = re.compile(r"^data:(?P<media>[^,;]*)(?P<params>(;[^,;]*)*),(?P<payload>.*)$", re.DOTALL | re.IGNORECASE)


def decode_image_text(text: str, *, data_url_required: bool) -> bytes:
    """The bytes of an image sent as text: a ``data:image/...;base64,`` URL, or (for assets) bare base64."""
    if not isinstance(text, str) or not text:
        raise DomainError("BadRequestImageFormat", "The image is empty.")
    if len(text) > _MAX_ENCODED_LENGTH:
        raise DomainError("BadRequestImageSizeBytes", f"The image is larger than {limits.MAX_IMAGE_BYTES} bytes.")
    match = _DATA_URL.match(text)
    if match is None and data_url_required:
        raise DomainError("BadRequestImageFormat", "The image must be a data URL: data:image/png;base64,....")
    payload = text
    if match is not None:
        media = match["media"].strip().lower()
        parameters = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
        if media and not media.startswith("image/"):
            raise DomainError("BadRequestImageFormat", f"The data URL holds {media}, not an image.")
        if "base64" not in parameters:
            raise DomainError("BadRequestImageFormat", "The data URL must be base64-encoded (data:image/...;base64,...).")
        payload = match["payload"]
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DomainError("BadRequestImageFormat", f"The image is not valid base64: {error}.") from error
    if not data:
        raise DomainError("BadRequestImageFormat", "The image is empty.")
    return data


def prepare_upload(data: bytes) -> PreparedImage:
    """Check and prepare an uploaded image, as Custom Vision checks its training images."""
    try:
        return prepare_image(data, ImageLimits(max_bytes=limits.MAX_IMAGE_BYTES))
    except ImageSizeError as error:
        raise DomainError("BadRequestImageSizeBytes", f"The image is too large: {error}") from error
    except ImageFormatError as error:
        raise DomainError("BadRequestImageFormat", f"The image cannot be read as JPEG, PNG, BMP or GIF: {error}") from error


def _check_name(name: str) -> str:
    name = require_storable_text(name if isinstance(name, str) else "", "BadRequest", "An asset name").strip()
    if not name or len(name) > MAX_ASSET_NAME_LENGTH:
        raise DomainError("BadRequest", f"An asset name is 1 to {MAX_ASSET_NAME_LENGTH} characters.")
    return name


def _blob_keys(resource_id: str, asset_id: str) -> tuple[str, str, str]:
    base = f"resources/{resource_id}/assets/{asset_id}"
    return f"{base}/original", f"{base}/resized", f"{base}/thumbnail"


def create_asset(session: Session, blobs: BlobStore, resource: Resource, *, name: str, image_text: str) -> ScenarioAsset:
    """Store an uploaded image whole (blobs and row) or not at all."""
    name = _check_name(name)
    prepared = prepare_upload(decode_image_text(image_text, data_url_required=False))
    asset_id = str(uuid.uuid4())
    keys = _blob_keys(resource.id, asset_id)
    written = put_all(blobs, zip(keys, (prepared.original, prepared.resized, prepared.thumbnail)))
    now = utcnow()
    asset = ScenarioAsset(
        id=asset_id, resource_id=resource.id, name=name, description="", created=now, updated=now,
        width=prepared.width, height=prepared.height, format=prepared.format, size=len(prepared.original),
        sha256=prepared.sha256, original_key=keys[0], resized_key=keys[1], thumbnail_key=keys[2],
    )
    session.add(asset)
    commit_or_discard(session, blobs, written)
    return asset


def get_asset(session: Session, resource: Resource, asset_id: str) -> ScenarioAsset:
    # Another resource's asset answers exactly like a missing one.
    asset = session.get(ScenarioAsset, asset_id)
    if asset is None or asset.resource_id != resource.id:
        raise DomainError("NotFoundImage", "This asset was not found.")
    return asset


def assets_by_id(session: Session, resource: Resource, asset_ids: Sequence[str]) -> dict[str, ScenarioAsset]:
    if not asset_ids:
        return {}
    query = select(ScenarioAsset).where(ScenarioAsset.resource_id == resource.id, ScenarioAsset.id.in_(list(asset_ids)))
    return {asset.id: asset for asset in session.scalars(query)}


def list_assets(session: Session, resource: Resource) -> list[ScenarioAsset]:
    query = select(ScenarioAsset).where(ScenarioAsset.resource_id == resource.id)
    return list(session.scalars(query.order_by(ScenarioAsset.created.desc(), ScenarioAsset.id)))


def update_asset(session: Session, asset: ScenarioAsset, *, name: str | None, description: str | None) -> ScenarioAsset:
    if name is not None:
        asset.name = _check_name(name)
    if description is not None:
        asset.description = bounded_description(description, "BadRequest")
    asset.updated = utcnow()
    session.commit()
    return asset


def delete_assets(session: Session, blobs: BlobStore, resource: Resource, asset_ids: Sequence[str]) -> None:
    """Delete the resource's assets among ``asset_ids``; training images made from them stay (they are copies)."""
    if not asset_ids:
        raise DomainError("BadRequestRequiredParamIsNull", "Give the assetIds to delete.")
    if len(asset_ids) > MAX_ASSETS_PER_DELETE:
        raise DomainError("BadRequestExceededBatchSize", f"At most {MAX_ASSETS_PER_DELETE} assets per request.")
    doomed = list(assets_by_id(session, resource, asset_ids).values())
    keys = [key for asset in doomed for key in (asset.original_key, asset.resized_key, asset.thumbnail_key)]
    if doomed:
        session.execute(delete(ScenarioAsset).where(ScenarioAsset.id.in_([asset.id for asset in doomed])))
    session.commit()
    # Rows go first: a crash in between leaves unreachable blobs, never rows pointing at missing files.
    for key in keys:
        blobs.delete(key)


def prepared_asset(blobs: BlobStore, asset: ScenarioAsset) -> PreparedImage:
    """The asset as it was prepared at upload, ready to be stored as a project image."""
    return restore_prepared(width=asset.width, height=asset.height, format=asset.format, sha256=asset.sha256,
                            original=blobs.get(asset.original_key), resized=blobs.get(asset.resized_key),
                            thumbnail=blobs.get(asset.thumbnail_key))


def store_asset_embeddings(session: Session, assets: Sequence[ScenarioAsset], backbone: str, vectors: np.ndarray,
                           labels: Sequence[str]) -> None:
    insert_missing(session, ScenarioAssetEmbedding, [
        {"asset_id": asset.id, "backbone": backbone, "vector": np.asarray(vector, np.float32).tobytes(), "label": label}
        for asset, vector, label in zip(assets, vectors, labels)
    ])
    session.commit()


def asset_captions(session: Session, asset_ids: Sequence[str]) -> dict[str, str]:
    """The automatic caption of those assets already embedded (ImageNet's label for them)."""
    if not asset_ids:
        return {}
    query = select(ScenarioAssetEmbedding).where(ScenarioAssetEmbedding.asset_id.in_(list(asset_ids)),
                                                 ScenarioAssetEmbedding.backbone == SCENARIO_BACKBONE)
    return {row.asset_id: caption_for(row.label) for row in session.scalars(query)}


def carry_embeddings(session: Session, made_from: Sequence[tuple[str, str]]) -> None:
    """Images made from assets (image id, asset id) start with the assets' embeddings: same resized copy, same vector."""
    if not made_from:
        return
    asset_of = {asset_id: image_id for image_id, asset_id in made_from}
    rows = session.scalars(select(ScenarioAssetEmbedding).where(ScenarioAssetEmbedding.asset_id.in_(list(asset_of))))
    insert_missing(session, ImageEmbedding, [{"image_id": asset_of[row.asset_id], "backbone": row.backbone, "vector": row.vector}
                                             for row in rows])


def embeddings_of_images_from(session: Session, asset_ids: Sequence[str], backbone: str) -> dict[str, np.ndarray]:
    """Vectors already computed for images made from these assets: the assets' own (same resized copy)."""
    if not asset_ids:
        return {}
    query = (select(TrainingImageDetails.source_asset_id, ImageEmbedding.vector)
             .join(ImageEmbedding, ImageEmbedding.image_id == TrainingImageDetails.image_id)
             .where(TrainingImageDetails.source_asset_id.in_(list(asset_ids)), ImageEmbedding.backbone == backbone))
    return {asset_id: np.frombuffer(vector, dtype=np.float32) for asset_id, vector in session.execute(query)}

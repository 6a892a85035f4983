"""Training images, Scenario's way: a model's training images ARE its project's images.

They are added through ``images.create_images`` (so duplicates, limits and atomic storage are the Custom
Vision rules), from assets of the resource or from a data URL, and captioned as they arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from opencustomvision.domain import assets as asset_rules
from opencustomvision.domain import images
from opencustomvision.domain.captions import PRESETS, ImageLabeler, ensure_captions
from opencustomvision.domain.descriptions import check_description, check_file_name, details_of, set_description
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.images import ImageInput
from opencustomvision.domain.scenario_models import TRAINING_STATUS, model_status
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import (
    Base, Image, Project, Resource, ScenarioAsset, TrainingImageDetails, TrainingImagePair, utcnow,
)

MAX_ASSETS_PER_REQUEST = 10


@dataclass(frozen=True)
class TrainingImageSource:
    """Scenario's body: ``assetId``, or ``assetIds`` (batch), or ``data`` (a data URL) with ``name``."""

    asset_id: str | None = None
    asset_ids: list[str] | None = None
    data: str | None = None
    name: str | None = None
    preset: str = "default"
    # Replace only: the user's description of the image.
    description: str | None = None

    @property
    def gives_image(self) -> bool:
        return bool(self.asset_id or self.asset_ids is not None or self.data is not None)


@dataclass(frozen=True)
class TrainingImage:
    image: Image
    caption: str
    name: str = ""
    description: str = ""


@dataclass
class _Plan:
    sources: list[ImageInput] = field(default_factory=list)
    assets: list[ScenarioAsset | None] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def require_not_training(session: Session, project: Project) -> None:
    if model_status(session, project) == TRAINING_STATUS:
        raise DomainError("BadRequestTrainingAlreadyInProgress",
                          "The model is training: its training images cannot change until the training ends (or is canceled).")


def check_source(source: TrainingImageSource, *, batch_allowed: bool = True) -> TrainingImageSource:
    if source.preset not in PRESETS:
        raise DomainError("BadRequest", f"preset must be one of {', '.join(PRESETS)}.")
    if source.asset_ids is not None:
        if not batch_allowed:
            raise DomainError("BadRequest", "assetIds (batch mode) adds images; replace one with assetId or data.")
        if source.asset_id is not None or source.data is not None or source.name is not None:
            raise DomainError("BadRequest", "assetIds cannot be used with assetId, data or name.")
        if not source.asset_ids:
            raise DomainError("BadRequest", "assetIds is empty.")
        if len(source.asset_ids) > MAX_ASSETS_PER_REQUEST:
            raise DomainError("BadRequestExceededBatchSize",
                              f"At most {MAX_ASSETS_PER_REQUEST} assetIds per request; got {len(source.asset_ids)}.")
    elif source.asset_id is None and source.data is None:
        raise DomainError("BadRequest", "Give assetId, assetIds (up to 10) or data (a data URL) with name.")
    if source.description is not None:
        check_description(source.description)
    return source


def _already_training_images(session: Session, project: Project, asset_ids: Sequence[str]) -> list[str]:
    query = (select(TrainingImageDetails.source_asset_id)
             .join(Image, Image.id == TrainingImageDetails.image_id)
             .where(Image.project_id == project.id, TrainingImageDetails.source_asset_id.in_(list(asset_ids))))
    return sorted(set(session.scalars(query)) - {None})  # type: ignore[arg-type]


def _plan(session: Session, blobs: BlobStore, resource: Resource, project: Project, source: TrainingImageSource,
          asset_ids: Sequence[str]) -> _Plan:
    """Everything checked before anything is stored: a refusal stores nothing."""
    plan = _Plan()
    if source.asset_id is not None or source.asset_ids is not None:
        # The client's own ids, for messages: ``asset_ids`` are the same ids decoded.
        named = dict(zip(asset_ids, source.asset_ids if source.asset_ids is not None else [source.asset_id]))
        wanted = list(dict.fromkeys(asset_ids))
        found = asset_rules.assets_by_id(session, resource, wanted)
        missing = [asset_id for asset_id in wanted if asset_id not in found]
        if missing:
            raise DomainError("NotFoundImage", f"Asset {named[missing[0]]} was not found.")
        already = set(_already_training_images(session, project, wanted))
        if already:
            first = next(asset_id for asset_id in wanted if asset_id in already)
            raise DomainError("BadRequestImageExists", f"Asset {named[first]} is already a training image of this model.")
        for asset_id in wanted:
            asset = found[asset_id]
            plan.sources.append(ImageInput(prepared=asset_rules.prepared_asset(blobs, asset)))
            plan.assets.append(asset)
            plan.names.append(asset.name)
        return plan
    data = asset_rules.decode_image_text(source.data or "", data_url_required=True)
    plan.sources.append(ImageInput(prepared=asset_rules.prepare_upload(data)))
    plan.assets.append(None)
    plan.names.append(check_file_name(source.name))
    return plan


def _link_duplicate(session: Session, image: Image, name: str, asset: ScenarioAsset | None) -> None:
    """Bytes already in the project are that image (as on the Custom Vision side); it learns where they came from."""
    details = session.get(TrainingImageDetails, image.id)
    if details is None:
        session.add(TrainingImageDetails(image_id=image.id, name=name, description="",
                                         source_asset_id=asset.id if asset is not None else None))
    elif details.source_asset_id is None and asset is not None:
        details.source_asset_id = asset.id


def add_training_images(session: Session, blobs: BlobStore, labeler: ImageLabeler, resource: Resource, project: Project,
                        source: TrainingImageSource, *, asset_ids: Sequence[str] = ()) -> list[TrainingImage]:
    """Store the images (new ones whole or not at all) and caption them. ``asset_ids``: the decoded ids."""
    check_source(source)
    require_not_training(session, project)
    plan = _plan(session, blobs, resource, project, source, asset_ids)
    index = {id(input_): position for position, input_ in enumerate(plan.sources)}

    def details(image: Image, input_: ImageInput) -> list[Base]:
        position = index[id(input_)]
        asset = plan.assets[position]
        return [TrainingImageDetails(image_id=image.id, name=plan.names[position], description="",
                                     source_asset_id=asset.id if asset is not None else None)]

    outcomes = images.create_images(session, blobs, project, plan.sources, companions=details)
    stored: list[Image] = []
    for outcome, asset, name in zip(outcomes, plan.assets, plan.names):
        if outcome.image is None:
            raise DomainError("ErrorUnknown", f"The image could not be stored ({outcome.status}); try again.")
        if outcome.status == "OKDuplicate":
            _link_duplicate(session, outcome.image, name, asset)
        stored.append(outcome.image)
    asset_rules.carry_embeddings(session, [(image.id, asset.id) for image, asset in zip(stored, plan.assets) if asset is not None])
    session.commit()
    return present_training_images(session, labeler, project, stored, preset=source.preset)


def present_training_images(session: Session, labeler: ImageLabeler, project: Project, found: Sequence[Image],
                            *, preset: str = "default") -> list[TrainingImage]:
    """The images with their captions (made now for any still without one), names and descriptions."""
    ids = [image.id for image in found]
    captions = ensure_captions(session, labeler, project, ids, preset=preset)
    details = details_of(session, ids)
    return [TrainingImage(image, captions[image.id], details[image.id].name if image.id in details else "",
                          details[image.id].description if image.id in details else "")
            for image in found]


def list_training_images(session: Session, labeler: ImageLabeler, project: Project, *, limit: int | None = None) -> list[TrainingImage]:
    query = select(Image).where(Image.project_id == project.id).order_by(Image.created, Image.id)
    if limit is not None:
        query = query.limit(limit)
    return present_training_images(session, labeler, project, list(session.scalars(query)))


def replace_training_image(session: Session, blobs: BlobStore, labeler: ImageLabeler, resource: Resource,
                           project: Project, image_id: str, source: TrainingImageSource,
                           *, asset_ids: Sequence[str] = ()) -> TrainingImage:
    """Put another image in this one's place (its pairs follow it); or, with only a description, describe it."""
    if source.gives_image:
        check_source(source, batch_allowed=False)
    elif source.description is None:
        raise DomainError("BadRequest", "Give the new image (assetId, or data with name), or a description.")
    require_not_training(session, project)
    old = images.get_image(session, project, image_id)
    current = old
    if source.gives_image:
        replacement = add_training_images(session, blobs, labeler, resource, project, source, asset_ids=asset_ids)[0]
        current = replacement.image
        if current.id != old.id:
            session.execute(update(TrainingImagePair).where(TrainingImagePair.source_image_id == old.id)
                            .values(source_image_id=current.id))
            session.execute(update(TrainingImagePair).where(TrainingImagePair.target_image_id == old.id)
                            .values(target_image_id=current.id))
            session.commit()
            images.delete_images(session, blobs, project, [old.id], all_images=False)
    if source.description is not None:
        set_description(session, current, source.description)
        project.last_modified = utcnow()
        session.commit()
    return present_training_images(session, labeler, project, [current], preset=source.preset)[0]


def delete_training_image(session: Session, blobs: BlobStore, project: Project, image_id: str) -> None:
    require_not_training(session, project)
    image = images.get_image(session, project, image_id)
    images.delete_images(session, blobs, project, [image.id], all_images=False)

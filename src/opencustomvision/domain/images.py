"""Training images: creation from bytes or URLs, tags, regions, metadata, listing."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import Select, and_, delete, exists, func, not_, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.errors import DomainError, not_found
from opencustomvision.domain.naming import require_storable_text
from opencustomvision.domain.metadata_filter import And, Comparison, Expr, MetadataFilterError, parse_metadata_filter
from opencustomvision.domain.projects import project_blob_prefix
from opencustomvision.imaging.decode import ImageFormatError, ImageLimits, ImageSizeError, PreparedImage, prepare_image
from opencustomvision.imaging.fetch import FetchError, FetchPolicy, fetch_bytes
from opencustomvision.storage.atomic import put_all
from opencustomvision.storage.blobs import BlobStore
from opencustomvision.storage.models import Base, Image, ImageMetadata, ImageTag, IterationImage, Project, Region, Tag, utcnow

TaggingStatus = Literal["All", "Tagged", "Untagged"]
OrderBy = Literal["Newest", "Oldest"]
# Decoding and fetching release the GIL; a few threads keep both cores busy without flooding memory.
_WORKERS = max(2, min(8, (os.cpu_count() or 2) * 2))
_COORDINATE_SLACK = 1e-6


@dataclass(frozen=True)
class RegionInput:
    tag_id: str
    left: float
    top: float
    width: float
    height: float


@dataclass
class ImageInput:
    """One image of a creation batch: bytes already at hand, a URL to fetch, or an image checked before."""

    data: bytes | None = None
    source_url: str | None = None
    # Already decoded, checked and resized by prepare_image (a Scenario asset): stored as it is.
    prepared: PreparedImage | None = None
    tag_ids: list[str] = field(default_factory=list)
    regions: list[RegionInput] = field(default_factory=list)


@dataclass(frozen=True)
class ImageCreateOutcome:
    status: str
    image: Image | None
    source_url: str | None = None

    @property
    def is_success(self) -> bool:
        return self.status == "OK"


@dataclass(frozen=True)
class ImageQuery:
    tag_ids: Sequence[str] | None = None
    tagging_status: TaggingStatus = "All"
    metadata_filter: str | None = None
    order_by: OrderBy = "Newest"
    # The images an iteration trained on, instead of the whole workspace.
    iteration_id: str | None = None


@dataclass(frozen=True)
class ImageTagOutcome:
    created: list[tuple[str, str]]
    duplicated: list[tuple[str, str]]
    exceeded: list[tuple[str, str]]


@dataclass(frozen=True)
class RegionOutcome:
    created: list[Region]
    duplicated: list[tuple[str, RegionInput]]
    exceeded: list[tuple[str, RegionInput]]


@dataclass(frozen=True)
class MetadataOutcome:
    image_id: str
    status: str
    metadata: dict[str, str] | None


# ---------------------------------------------------------------------------------------------
# validation shared by every batch


Box = tuple[float, float, float, float]  # left, top, width, height, normalised to the image


def check_ids(ids: Iterable[uuid.UUID | str], *, what: str, limit: int) -> list[str]:
    normalised = list(dict.fromkeys(str(identifier).lower() for identifier in ids))
    if len(normalised) > limit:
        raise DomainError("BadRequestExceededBatchSize", f"At most {limit} {what} per request.")
    return normalised


def _project_tags(session: Session, project: Project, tag_ids: Iterable[str]) -> dict[str, Tag]:
    wanted = set(tag_ids)
    if not wanted:
        return {}
    found = {tag.id: tag for tag in session.scalars(select(Tag).where(Tag.project_id == project.id, Tag.id.in_(wanted)))}
    missing = wanted - found.keys()
    if missing:
        raise DomainError("BadRequestImageTags", f"Tags not found in this project: {', '.join(sorted(missing))}.")
    return found


def images_by_id(session: Session, image_ids: Iterable[str]) -> dict[str, Image]:
    """The stored images with these ids, whatever their project: for ids that came from the database itself."""
    return {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(list(image_ids))))}


def _project_images(session: Session, project: Project, image_ids: Iterable[str]) -> dict[str, Image]:
    wanted = set(image_ids)
    if not wanted:
        return {}
    query = select(Image).where(Image.project_id == project.id, Image.id.in_(wanted))
    return {image.id: image for image in session.scalars(query)}


def get_image(session: Session, project: Project, image_id: uuid.UUID | str) -> Image:
    image = _project_images(session, project, [str(image_id).lower()]).get(str(image_id).lower())
    if image is None:
        raise not_found("NotFoundImage", "Image", image_id)
    return image


def check_region(region: RegionInput) -> RegionInput:
    values = (region.left, region.top, region.width, region.height)
    inside = (
        all(math.isfinite(value) for value in values)
        and region.left >= 0
        and region.top >= 0
        and region.width > 0
        and region.height > 0
        and region.left + region.width <= 1 + _COORDINATE_SLACK
        and region.top + region.height <= 1 + _COORDINATE_SLACK
    )
    if not inside:
        raise DomainError(
            "BadRequestImageRegions",
            "Region coordinates are normalised: left and top at least 0, width and height above 0, "
            f"and the box inside the image (got left={region.left}, top={region.top}, "
            f"width={region.width}, height={region.height}).",
        )
    return region


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    if len(metadata) > limits.MAX_METADATA_PER_IMAGE:
        raise DomainError("BadRequestImageMetadataKey", f"At most {limits.MAX_METADATA_PER_IMAGE} metadata pairs per image.")
    for key, value in metadata.items():
        require_storable_text(key, "BadRequestImageMetadataKey", "A metadata key")
        require_storable_text(value or "", "BadRequestImageMetadataValue", "A metadata value")
        if not key or len(key) > limits.MAX_METADATA_KEY_LENGTH:
            raise DomainError("BadRequestImageMetadataKey", f"Metadata keys are 1 to {limits.MAX_METADATA_KEY_LENGTH} characters.")
        if value is None or len(value) > limits.MAX_METADATA_VALUE_LENGTH:
            raise DomainError(
                "BadRequestImageMetadataValue", f"Metadata values are at most {limits.MAX_METADATA_VALUE_LENGTH} characters."
            )
    return dict(metadata)


def _mixes_negative_and_regular(tags: Iterable[Tag]) -> bool:
    types = {tag.type for tag in tags}
    return "Negative" in types and len(types) > 1


# ---------------------------------------------------------------------------------------------
# creation


def _blob_keys(project_id: str, image_id: str) -> tuple[str, str, str]:
    base = f"{project_blob_prefix(project_id)}/images/{image_id}"
    return f"{base}/original", f"{base}/resized", f"{base}/thumbnail"


def _obtain_and_prepare(source: ImageInput, fetch_policy: FetchPolicy) -> PreparedImage | str:
    """The prepared image, or the spec's status naming why it cannot be one."""
    if source.prepared is not None:
        return source.prepared
    data = source.data
    if data is None:
        try:
            data = fetch_bytes(source.source_url or "", fetch_policy)
        except FetchError:
            return "ErrorSource"
    try:
        return prepare_image(data, ImageLimits(max_bytes=limits.MAX_IMAGE_BYTES))
    except ImageSizeError:
        return "ErrorImageSize"
    except ImageFormatError:
        return "ErrorImageFormat"


def _prepare_all(planned: Sequence[tuple[ImageInput, list[Tag]] | str], fetch_policy: FetchPolicy) -> list[PreparedImage | str]:
    """Fetch and decode the batch's images in parallel. If one cannot get room in the decode budget (DecodeBusy),
    the batch is given up at once: the images not yet started are dropped rather than decoded for nothing."""
    pool = ThreadPoolExecutor(max_workers=_WORKERS)
    try:
        futures = [None if isinstance(plan, str) else pool.submit(_obtain_and_prepare, plan[0], fetch_policy) for plan in planned]
        return [plan if future is None else future.result() for plan, future in zip(planned, futures)]  # type: ignore[misc]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def create_images(
    session: Session,
    blobs: BlobStore,
    project: Project,
    sources: Sequence[ImageInput],
    *,
    tag_ids: Sequence[str] = (),
    metadata: dict[str, str] | None = None,
    fetch_policy: FetchPolicy = FetchPolicy(),
    companions: Callable[[Image, ImageInput], Sequence[Base]] | None = None,
) -> list[ImageCreateOutcome]:
    """Add a batch of images. Each image is stored whole or not at all; the others are unaffected.

    ``companions``: rows that belong with each newly stored image (another room's view of it), committed in
    the image's own transaction.
    """
    if not sources:
        raise DomainError("BadRequestImageBatch", "The batch holds no images.")
    if len(sources) > limits.MAX_IMAGES_PER_BATCH:
        raise DomainError("BadRequestImageBatch", f"A batch holds at most {limits.MAX_IMAGES_PER_BATCH} images; got {len(sources)}.")
    batch_tag_ids = check_ids(tag_ids, what="tags", limit=limits.MAX_TAGS_PER_BATCH)
    entry_tag_ids = [check_ids(source.tag_ids, what="tags", limit=limits.MAX_TAGS_PER_BATCH) for source in sources]
    for source in sources:
        for region in source.regions:
            check_region(region)
    metadata = check_metadata(metadata or {})
    every_tag_id = set(batch_tag_ids).union(*entry_tag_ids).union(
        region.tag_id.lower() for source in sources for region in source.regions
    )
    tags = _project_tags(session, project, every_tag_id)

    planned: list[tuple[ImageInput, list[Tag]] | str] = []
    for source, own_tag_ids in zip(sources, entry_tag_ids):
        region_tag_ids = [region.tag_id.lower() for region in source.regions]
        image_tags = [tags[tag_id] for tag_id in dict.fromkeys([*batch_tag_ids, *own_tag_ids, *region_tag_ids])]
        if len(source.regions) > limits.MAX_REGIONS_PER_IMAGE:
            planned.append("ErrorRegionLimitExceed")
        elif len(image_tags) > limits.MAX_TAGS_PER_IMAGE:
            planned.append("ErrorTagLimitExceed")
        elif _mixes_negative_and_regular(image_tags):
            planned.append("ErrorNegativeAndRegularTagOnSameImage")
        else:
            planned.append((source, image_tags))

    prepared = _prepare_all(planned, fetch_policy)

    outcomes: list[ImageCreateOutcome] = []
    seen: dict[str, Image] = {}
    for source, plan, result in zip(sources, planned, prepared):
        if isinstance(result, str) or isinstance(plan, str):
            outcomes.append(ImageCreateOutcome(status=result if isinstance(result, str) else str(plan), image=None, source_url=source.source_url))
            continue
        duplicate = seen.get(result.sha256) or _stored_with_hash(session, project, result.sha256)
        if duplicate is not None:
            outcomes.append(ImageCreateOutcome(status="OKDuplicate", image=duplicate, source_url=source.source_url))
            continue
        status, image = _store_image(session, blobs, project, result, plan[1], source.regions, metadata,
                                     (lambda stored, source=source: companions(stored, source)) if companions else None)
        if image is not None:
            seen[result.sha256] = image
        outcomes.append(ImageCreateOutcome(status=status, image=image, source_url=source.source_url))
    return outcomes


def _stored_with_hash(session: Session, project: Project, sha256: str) -> Image | None:
    return session.scalars(select(Image).where(Image.project_id == project.id, Image.sha256 == sha256)).first()


def _store_image(
    session: Session,
    blobs: BlobStore,
    project: Project,
    prepared: PreparedImage,
    tags: list[Tag],
    regions: Sequence[RegionInput],
    metadata: dict[str, str],
    companions: Callable[[Image], Sequence[Base]] | None,
) -> tuple[str, Image | None]:
    """Store one image in a transaction of its own: its blobs first, then its rows (with its ``companions``).
    Whatever fails, the image is whole (row, original, resized copy, thumbnail) or absent; a failed image never
    takes the batch's others along."""
    image_id = str(uuid.uuid4())
    keys = _blob_keys(project.id, image_id)
    try:
        put_all(blobs, zip(keys, (prepared.original, prepared.resized, prepared.thumbnail)))
    except OSError:
        return "ErrorStorage", None
    now = utcnow()
    image = Image(
        id=image_id, project_id=project.id, created=now, width=prepared.width, height=prepared.height,
        format=prepared.format, sha256=prepared.sha256, original_key=keys[0], resized_key=keys[1], thumbnail_key=keys[2],
        tags=[ImageTag(tag_id=tag.id, tag=tag, created=now) for tag in tags],
        regions=[Region(tag_id=region.tag_id.lower(), left=region.left, top=region.top, width=region.width,
                        height=region.height, created=now) for region in regions],
        metadata_entries=[ImageMetadata(key=key, value=value) for key, value in metadata.items()],
    )
    session.add(image)
    project.last_modified = now
    try:
        if companions is not None:
            session.flush()
            session.add_all(companions(image))
        session.commit()
    except SQLAlchemyError as error:
        session.rollback()
        for key in keys:
            blobs.delete(key)
        if isinstance(error, IntegrityError):
            # The same bytes were stored by a concurrent upload between our check and our insert.
            winner = _stored_with_hash(session, project, prepared.sha256)
            if winner is not None:
                return "OKDuplicate", winner
        return "ErrorStorage", None
    return "OK", image


# ---------------------------------------------------------------------------------------------
# reading


def _metadata_condition(expression: Expr):  # type: ignore[no-untyped-def]
    if isinstance(expression, Comparison):
        matching = exists().where(
            ImageMetadata.image_id == Image.id, ImageMetadata.key == expression.key, ImageMetadata.value == expression.value
        )
        return matching if expression.op == "eq" else not_(matching)
    combine = and_ if isinstance(expression, And) else or_
    return combine(_metadata_condition(expression.left), _metadata_condition(expression.right))


def _iteration_members(iteration_id: str):  # type: ignore[no-untyped-def]
    return select(IterationImage.image_id).where(IterationImage.iteration_id == iteration_id)


def _filtered(project: Project, query: ImageQuery) -> Select[tuple[Image]]:
    statement = select(Image).where(Image.project_id == project.id)
    if query.iteration_id is not None:
        statement = statement.where(Image.id.in_(_iteration_members(query.iteration_id)))
    any_tag = exists().where(ImageTag.image_id == Image.id)
    if query.tag_ids:
        tag_ids = check_ids(query.tag_ids, what="tags", limit=limits.MAX_TAGS_PER_QUERY)
        statement = statement.where(exists().where(ImageTag.image_id == Image.id, ImageTag.tag_id.in_(tag_ids)))
    if query.tagging_status == "Tagged":
        statement = statement.where(any_tag)
    elif query.tagging_status == "Untagged":
        statement = statement.where(not_(any_tag))
    if query.metadata_filter:
        require_storable_text(query.metadata_filter, "BadRequest", "$filter")
        try:
            expression = parse_metadata_filter(query.metadata_filter)
        except MetadataFilterError as error:
            raise DomainError("BadRequest", f"Invalid $filter: {error}") from error
        statement = statement.where(_metadata_condition(expression))
    return statement


def list_images(session: Session, project: Project, query: ImageQuery, *, take: int, skip: int) -> list[Image]:
    if not 0 <= take <= limits.MAX_TAKE:
        raise DomainError("BadRequest", f"take must be between 0 and {limits.MAX_TAKE}.")
    if skip < 0:
        raise DomainError("BadRequest", "skip must not be negative.")
    order = (Image.created.asc(), Image.id.asc()) if query.order_by == "Oldest" else (Image.created.desc(), Image.id.desc())
    statement = _filtered(project, query).order_by(*order).offset(skip).limit(take)
    return list(session.scalars(statement))


def count_images(session: Session, project: Project, query: ImageQuery) -> int:
    statement = select(func.count()).select_from(_filtered(project, query).subquery())
    return int(session.scalar(statement) or 0)


def images_by_ids(session: Session, project: Project, image_ids: Sequence[uuid.UUID | str],
                  iteration_id: str | None = None) -> list[Image]:
    ids = check_ids(image_ids, what="images", limit=limits.MAX_IDS_PER_REQUEST)
    found = _project_images(session, project, ids)
    if iteration_id is not None:
        members = set(session.scalars(_iteration_members(iteration_id)))
        found = {image_id: image for image_id, image in found.items() if image_id in members}
    return [found[image_id] for image_id in ids if image_id in found]


# ---------------------------------------------------------------------------------------------
# changes to existing images


def delete_images(session: Session, blobs: BlobStore, project: Project, image_ids: Sequence[uuid.UUID | str] | None, *, all_images: bool) -> None:
    if all_images:
        doomed = list(session.scalars(select(Image).where(Image.project_id == project.id)))
    elif image_ids:
        doomed = list(_project_images(session, project, check_ids(image_ids, what="images", limit=limits.MAX_IDS_PER_REQUEST)).values())
    else:
        raise DomainError("BadRequestRequiredParamIsNull", "Give imageIds, or allImages=true.")
    keys = [key for image in doomed for key in (image.original_key, image.resized_key, image.thumbnail_key)]
    if doomed:
        session.execute(delete(Image).where(Image.id.in_([image.id for image in doomed])))
        project.last_modified = utcnow()
    session.commit()
    for key in keys:
        blobs.delete(key)


def add_image_tags(session: Session, project: Project, pairs: Sequence[tuple[str, str]]) -> ImageTagOutcome:
    if len(pairs) > limits.MAX_TAG_ENTRIES_PER_BATCH:
        raise DomainError("BadRequestExceededBatchSize", f"At most {limits.MAX_TAG_ENTRIES_PER_BATCH} image tags per batch.")
    pairs = list(dict.fromkeys((image_id.lower(), tag_id.lower()) for image_id, tag_id in pairs))
    tags = _project_tags(session, project, {tag_id for _, tag_id in pairs})
    images = _project_images(session, project, {image_id for image_id, _ in pairs})
    missing = {image_id for image_id, _ in pairs} - images.keys()
    if missing:
        raise DomainError("BadRequestInvalidIds", f"Images not found in this project: {', '.join(sorted(missing))}.")

    created: list[tuple[str, str]] = []
    duplicated: list[tuple[str, str]] = []
    exceeded: list[tuple[str, str]] = []
    current = {image_id: {image_tag.tag_id: image_tag.tag for image_tag in image.tags} for image_id, image in images.items()}
    for image_id, tag_id in pairs:
        image_tags = current[image_id]
        if tag_id in image_tags:
            duplicated.append((image_id, tag_id))
        elif len(image_tags) >= limits.MAX_TAGS_PER_IMAGE:
            exceeded.append((image_id, tag_id))
        else:
            image_tags[tag_id] = tags[tag_id]
            created.append((image_id, tag_id))
    for image_id, image_tags in current.items():
        if _mixes_negative_and_regular(image_tags.values()):
            session.rollback()
            raise DomainError(
                "BadRequestNegativeAndRegularTagOnSameImage", f"Image {image_id} cannot carry the Negative tag and a regular tag."
            )
    now = utcnow()
    for image_id, tag_id in created:
        images[image_id].tags.append(ImageTag(image_id=image_id, tag_id=tag_id, tag=tags[tag_id], created=now))
    project.last_modified = now
    session.commit()
    return ImageTagOutcome(created=created, duplicated=duplicated, exceeded=exceeded)


def remove_image_tags(session: Session, project: Project, image_ids: Sequence[uuid.UUID | str], tag_ids: Sequence[uuid.UUID | str]) -> None:
    images = check_ids(image_ids, what="images", limit=limits.MAX_IMAGES_PER_BATCH)
    tags = check_ids(tag_ids, what="tags", limit=limits.MAX_TAGS_PER_BATCH)
    in_project = select(Image.id).where(Image.project_id == project.id, Image.id.in_(images))
    session.execute(delete(ImageTag).where(ImageTag.image_id.in_(in_project), ImageTag.tag_id.in_(tags)))
    # A box without its image tag would contradict the image's tag list.
    session.execute(delete(Region).where(Region.image_id.in_(in_project), Region.tag_id.in_(tags)))
    project.last_modified = utcnow()
    session.commit()


def add_regions(session: Session, project: Project, entries: Sequence[tuple[str, RegionInput]]) -> RegionOutcome:
    if len(entries) > limits.MAX_REGIONS_PER_BATCH:
        raise DomainError("BadRequestExceededBatchSize", f"At most {limits.MAX_REGIONS_PER_BATCH} regions per batch.")
    entries = [(image_id.lower(), check_region(region)) for image_id, region in entries]
    tags = _project_tags(session, project, {region.tag_id.lower() for _, region in entries})
    images = _project_images(session, project, {image_id for image_id, _ in entries})
    missing = {image_id for image_id, _ in entries} - images.keys()
    if missing:
        raise DomainError("BadRequestInvalidIds", f"Images not found in this project: {', '.join(sorted(missing))}.")
    for image_id, region in entries:
        image_tags = [image_tag.tag for image_tag in images[image_id].tags] + [tags[region.tag_id.lower()]]
        if _mixes_negative_and_regular(image_tags):
            raise DomainError(
                "BadRequestNegativeAndRegularTagOnSameImage", f"Image {image_id} cannot carry the Negative tag and a regular tag."
            )

    created: list[Region] = []
    duplicated: list[tuple[str, RegionInput]] = []
    exceeded: list[tuple[str, RegionInput]] = []
    now = utcnow()
    for image_id, region in entries:
        image = images[image_id]
        box = (region.tag_id.lower(), region.left, region.top, region.width, region.height)
        if any((r.tag_id, r.left, r.top, r.width, r.height) == box for r in image.regions):
            duplicated.append((image_id, region))
            continue
        if len(image.regions) >= limits.MAX_REGIONS_PER_IMAGE:
            exceeded.append((image_id, region))
            continue
        tag = tags[region.tag_id.lower()]
        stored = Region(image_id=image_id, tag_id=tag.id, tag=tag, left=region.left, top=region.top,
                        width=region.width, height=region.height, created=now)
        image.regions.append(stored)
        if all(image_tag.tag_id != tag.id for image_tag in image.tags):
            image.tags.append(ImageTag(image_id=image_id, tag_id=tag.id, tag=tag, created=now))
        created.append(stored)
    project.last_modified = now
    session.commit()
    return RegionOutcome(created=created, duplicated=duplicated, exceeded=exceeded)


def remove_regions(session: Session, project: Project, region_ids: Sequence[uuid.UUID | str]) -> None:
    ids = check_ids(region_ids, what="regions", limit=limits.MAX_REGIONS_PER_BATCH)
    if not ids:
        raise DomainError("BadRequestRequiredParamIsNull", "Give the ids of the regions to delete.")
    doomed = list(
        session.scalars(select(Region).join(Image, Image.id == Region.image_id).where(Image.project_id == project.id, Region.id.in_(ids)))
    )
    for region in doomed:
        session.delete(region)
    session.flush()
    # The image keeps a tag only while one of its boxes still carries it.
    for image_id, tag_id in {(region.image_id, region.tag_id) for region in doomed}:
        still_boxed = session.scalars(select(Region.id).where(Region.image_id == image_id, Region.tag_id == tag_id).limit(1)).first()
        if still_boxed is None:
            session.execute(delete(ImageTag).where(ImageTag.image_id == image_id, ImageTag.tag_id == tag_id))
    project.last_modified = utcnow()
    session.commit()


def update_metadata(session: Session, project: Project, image_ids: Sequence[uuid.UUID | str], metadata: dict[str, str]) -> list[MetadataOutcome]:
    ids = check_ids(image_ids, what="images", limit=limits.MAX_IMAGES_PER_BATCH)
    if not ids:
        raise DomainError("BadRequestRequiredParamIsNull", "Give the ids of the images to update.")
    metadata = check_metadata(metadata)
    images = _project_images(session, project, ids)
    outcomes: list[MetadataOutcome] = []
    for image_id in ids:
        image = images.get(image_id)
        if image is None:
            outcomes.append(MetadataOutcome(image_id, "ErrorImageNotFound", None))
            continue
        merged = {entry.key: entry.value for entry in image.metadata_entries} | metadata
        if len(merged) > limits.MAX_METADATA_PER_IMAGE:
            outcomes.append(MetadataOutcome(image_id, "ErrorLimitExceed", None))
            continue
        existing = {entry.key: entry for entry in image.metadata_entries}
        for key, value in metadata.items():
            if key in existing:
                existing[key].value = value
            else:
                image.metadata_entries.append(ImageMetadata(image_id=image_id, key=key, value=value))
        outcomes.append(MetadataOutcome(image_id, "OK", merged))
    project.last_modified = utcnow()
    session.commit()
    return outcomes

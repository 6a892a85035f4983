from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import Links, ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.params import uuid_list
from opencustomvision.api.uploads import uploaded_images
from opencustomvision.api.presenters import present_box, present_create_summary, present_image, present_region_entry
from opencustomvision.domain import images, limits
from opencustomvision.domain.images import ImageInput, ImageQuery, RegionInput
from opencustomvision.domain.iterations import get_iteration
from opencustomvision.domain.projects import get_project
from opencustomvision.storage.models import Project

router = APIRouter()

TagIds = Annotated[list[str], Depends(uuid_list("tagIds"))]
ImageIds = Annotated[list[str], Depends(uuid_list("imageIds"))]
RegionIds = Annotated[list[str], Depends(uuid_list("regionIds"))]
IterationId = Annotated[uuid.UUID | None, Query(alias="iterationId")]
OrderBy = Annotated[Literal["Newest", "Oldest"], Query(alias="orderBy")]
TaggingStatus = Annotated[Literal["All", "Tagged", "Untagged"], Query(alias="taggingStatus")]
MetadataFilter = Annotated[str | None, Query(alias="$filter")]
Take = Annotated[int, Query(ge=0, le=limits.MAX_TAKE)]
# The spec types skip as int32; bounding it keeps PostgreSQL from overflowing.
Skip = Annotated[int, Query(ge=0, le=2**31 - 1)]


def _iteration(session: SessionDep, project: Project, iteration_id: uuid.UUID | None) -> str | None:
    return get_iteration(session, project, iteration_id).id if iteration_id is not None else None


def regions_of(regions: list[schemas.Region] | None) -> list[RegionInput]:
    return [RegionInput(str(r.tag_id), r.left, r.top, r.width, r.height) for r in regions or []]


# ---------------------------------------------------------------------------------------------- listing


def _listing(
    request: Request, session: SessionDep, resource: TrainingResource, links: Links, project_id: uuid.UUID,
    query: ImageQuery, take: int, skip: int, iteration_id: uuid.UUID | None,
) -> Response:
    project = get_project(session, resource.id, project_id)
    query = replace(query, iteration_id=_iteration(session, project, iteration_id))
    found = images.list_images(session, project, query, take=take, skip=skip)
    return render(request, [present_image(image, links) for image in found], items=schemas.Image)


def _count(session: SessionDep, resource: TrainingResource, request: Request, project_id: uuid.UUID,
           query: ImageQuery, iteration_id: uuid.UUID | None) -> Response:
    project = get_project(session, resource.id, project_id)
    query = replace(query, iteration_id=_iteration(session, project, iteration_id))
    return render(request, images.count_images(session, project, query))


@router.get("/projects/{project_id:uuid}/images")
def get_images(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, links: Links,
    tag_ids: TagIds, iteration_id: IterationId = None, tagging_status: TaggingStatus = "All",
    metadata_filter: MetadataFilter = None, order_by: OrderBy = "Newest", take: Take = limits.DEFAULT_TAKE, skip: Skip = 0,
) -> Response:
    query = ImageQuery(tag_ids=tag_ids, tagging_status=tagging_status, metadata_filter=metadata_filter, order_by=order_by)
    return _listing(request, session, resource, links, project_id, query, take, skip, iteration_id)


@router.get("/projects/{project_id:uuid}/images/count")
def get_image_count(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, tag_ids: TagIds,
    iteration_id: IterationId = None, tagging_status: TaggingStatus = "All", metadata_filter: MetadataFilter = None,
) -> Response:
    query = ImageQuery(tag_ids=tag_ids, tagging_status=tagging_status, metadata_filter=metadata_filter)
    return _count(session, resource, request, project_id, query, iteration_id)


@router.get("/projects/{project_id:uuid}/images/tagged")
def get_tagged_images(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, links: Links,
    tag_ids: TagIds, iteration_id: IterationId = None, order_by: OrderBy = "Newest",
    take: Take = limits.DEFAULT_TAKE, skip: Skip = 0,
) -> Response:
    query = ImageQuery(tag_ids=tag_ids, tagging_status="Tagged", order_by=order_by)
    return _listing(request, session, resource, links, project_id, query, take, skip, iteration_id)


@router.get("/projects/{project_id:uuid}/images/tagged/count")
def get_tagged_image_count(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, tag_ids: TagIds,
    iteration_id: IterationId = None,
) -> Response:
    return _count(session, resource, request, project_id, ImageQuery(tag_ids=tag_ids, tagging_status="Tagged"), iteration_id)


@router.get("/projects/{project_id:uuid}/images/untagged")
def get_untagged_images(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, links: Links,
    iteration_id: IterationId = None, order_by: OrderBy = "Newest", take: Take = limits.DEFAULT_TAKE, skip: Skip = 0,
) -> Response:
    query = ImageQuery(tagging_status="Untagged", order_by=order_by)
    return _listing(request, session, resource, links, project_id, query, take, skip, iteration_id)


@router.get("/projects/{project_id:uuid}/images/untagged/count")
def get_untagged_image_count(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource,
    iteration_id: IterationId = None,
) -> Response:
    return _count(session, resource, request, project_id, ImageQuery(tagging_status="Untagged"), iteration_id)


@router.get("/projects/{project_id:uuid}/images/id")
def get_images_by_ids(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, links: Links,
    image_ids: ImageIds, iteration_id: IterationId = None,
) -> Response:
    project = get_project(session, resource.id, project_id)
    found = images.images_by_ids(session, project, image_ids, _iteration(session, project, iteration_id))
    return render(request, [present_image(image, links) for image in found], items=schemas.Image)


# ---------------------------------------------------------------------------------------------- creation


async def _create(
    request: Request, session: SessionDep, services: ServicesDep, resource: TrainingResource, links: Links,
    project_id: uuid.UUID, sources: list[ImageInput], tag_ids: list[str], metadata: dict[str, str] | None = None,
) -> Response:
    def create() -> schemas.ImageCreateSummary:
        project = get_project(session, resource.id, project_id)
        outcomes = images.create_images(session, services.blobs, project, sources, tag_ids=tag_ids,
                                        metadata=metadata, fetch_policy=services.fetch_policy)
        # Captions are made as images arrive, off this request's path (Scenario's view shows them).
        services.captioner.submit([outcome.image.id for outcome in outcomes if outcome.status == "OK" and outcome.image])
        return present_create_summary(outcomes, links)

    summary = await run_in_threadpool(create)
    return render(request, summary, status=200 if summary.is_batch_successful else 207)


def _entry(entry: schemas.ImageFileCreateEntry | schemas.ImageUrlCreateEntry, **source: bytes | str) -> ImageInput:
    return ImageInput(tag_ids=[str(t) for t in entry.tag_ids or []], regions=regions_of(entry.regions), **source)  # type: ignore[arg-type]


@router.post("/projects/{project_id:uuid}/images")
async def create_images_from_data(
    request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
    resource: TrainingResource, links: Links, tag_ids: TagIds,
) -> Response:
    # Refuse an unknown project before reading up to 64 uploads.
    await run_in_threadpool(get_project, session, resource.id, project_id)
    sources = [ImageInput(data=data) for data in await uploaded_images(request)]
    return await _create(request, session, services, resource, links, project_id, sources, tag_ids)


@router.post("/projects/{project_id:uuid}/images/files")
async def create_images_from_files(
    request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
    resource: TrainingResource, links: Links,
) -> Response:
    batch = await read_body(request, schemas.ImageFileCreateBatch)
    sources = [_entry(entry, data=entry.contents or b"", source_url=entry.name) for entry in batch.images or []]
    return await _create(request, session, services, resource, links, project_id, sources,
                         [str(t) for t in batch.tag_ids or []], batch.metadata)


@router.post("/projects/{project_id:uuid}/images/urls")
async def create_images_from_urls(
    request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
    resource: TrainingResource, links: Links,
) -> Response:
    batch = await read_body(request, schemas.ImageUrlCreateBatch)
    sources = [_entry(entry, source_url=entry.url) for entry in batch.images or []]
    return await _create(request, session, services, resource, links, project_id, sources,
                         [str(t) for t in batch.tag_ids or []], batch.metadata)


@router.delete("/projects/{project_id:uuid}/images")
def delete_images(
    project_id: uuid.UUID, session: SessionDep, services: ServicesDep, resource: TrainingResource,
    image_ids: ImageIds, all_images: Annotated[bool, Query(alias="allImages")] = False,
    all_iterations: Annotated[bool, Query(alias="allIterations")] = False,
) -> Response:
    project = get_project(session, resource.id, project_id)
    images.delete_images(session, services.blobs, project, image_ids, all_images=all_images)
    return Response(status_code=202 if all_images or all_iterations else 204)


# ---------------------------------------------------------------------------------------------- tags, regions, metadata


@router.post("/projects/{project_id:uuid}/images/tags")
async def create_image_tags(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    batch = await read_body(request, schemas.ImageTagCreateBatch)
    pairs = [(str(entry.image_id), str(entry.tag_id)) for entry in batch.tags or []]

    def create() -> schemas.ImageTagCreateSummary:
        outcome = images.add_image_tags(session, get_project(session, resource.id, project_id), pairs)

        def entries(found: list[tuple[str, str]]) -> list[schemas.ImageTagCreateEntry]:
            return [schemas.ImageTagCreateEntry(image_id=uuid.UUID(i), tag_id=uuid.UUID(t)) for i, t in found]

        return schemas.ImageTagCreateSummary(created=entries(outcome.created), duplicated=entries(outcome.duplicated),
                                             exceeded=entries(outcome.exceeded))

    return render(request, await run_in_threadpool(create))


@router.delete("/projects/{project_id:uuid}/images/tags", status_code=204)
def delete_image_tags(
    project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, image_ids: ImageIds, tag_ids: TagIds
) -> Response:
    images.remove_image_tags(session, get_project(session, resource.id, project_id), image_ids, tag_ids)
    return Response(status_code=204)


@router.post("/projects/{project_id:uuid}/images/regions")
async def create_image_regions(request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource) -> Response:
    batch = await read_body(request, schemas.ImageRegionCreateBatch)
    entries = [(str(r.image_id), RegionInput(str(r.tag_id), r.left, r.top, r.width, r.height)) for r in batch.regions or []]

    def create() -> schemas.ImageRegionCreateSummary:
        outcome = images.add_regions(session, get_project(session, resource.id, project_id), entries)
        return schemas.ImageRegionCreateSummary(
            created=[
                schemas.ImageRegionCreateResult(image_id=uuid.UUID(r.image_id), region_id=uuid.UUID(r.id), tag_name=r.tag.name,
                                                created=r.created, tag_id=uuid.UUID(r.tag_id), left=r.left, top=r.top,
                                                width=r.width, height=r.height)
                for r in outcome.created
            ],
            duplicated=[present_region_entry(image_id, region) for image_id, region in outcome.duplicated],
            exceeded=[present_region_entry(image_id, region) for image_id, region in outcome.exceeded],
        )

    summary = await run_in_threadpool(create)
    return render(request, summary, status=200 if not (summary.duplicated or summary.exceeded) else 207)


@router.delete("/projects/{project_id:uuid}/images/regions", status_code=204)
def delete_image_regions(project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, region_ids: RegionIds) -> Response:
    images.remove_regions(session, get_project(session, resource.id, project_id), region_ids)
    return Response(status_code=204)


@router.post("/projects/{project_id:uuid}/images/metadata")
async def update_image_metadata(
    request: Request, project_id: uuid.UUID, session: SessionDep, resource: TrainingResource, image_ids: ImageIds
) -> Response:
    metadata = await read_body(request, schemas.ImageMetadataBody)

    def update() -> schemas.ImageMetadataUpdateSummary:
        outcomes = images.update_metadata(session, get_project(session, resource.id, project_id), image_ids, metadata.root)
        return schemas.ImageMetadataUpdateSummary(
            is_batch_successful=all(outcome.status == "OK" for outcome in outcomes),
            images=[schemas.ImageMetadataUpdateEntry(image_id=uuid.UUID(o.image_id), status=o.status, metadata=o.metadata)  # type: ignore[arg-type]
                    for o in outcomes],
        )

    summary = await run_in_threadpool(update)
    return render(request, summary, status=200 if summary.is_batch_successful else 207)


@router.post("/projects/{project_id:uuid}/images/{image_id:uuid}/regionproposals")
def get_image_region_proposals(request: Request, project_id: uuid.UUID, image_id: uuid.UUID, session: SessionDep,
                               services: ServicesDep, resource: TrainingResource) -> Response:
    project = get_project(session, resource.id, project_id)
    image = images.get_image(session, project, image_id)
    proposals = services.predictor.propose_regions(services.blobs.get(image.resized_key))
    return render(request, schemas.ImageRegionProposal(project_id=uuid.UUID(project.id), image_id=uuid.UUID(image.id), proposals=[
        schemas.RegionProposal(confidence=p.confidence, bounding_box=present_box(p.box))
        for p in proposals
    ]))

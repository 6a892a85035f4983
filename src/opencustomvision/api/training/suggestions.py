from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from opencustomvision.api import schemas
from opencustomvision.api.deps import Links, ServicesDep, SessionDep, TrainingResource
from opencustomvision.api.negotiation import read_body, render
from opencustomvision.api.params import uuid_list
from opencustomvision.api.presenters import present_predictions
from opencustomvision.domain import suggestions
from opencustomvision.domain.iterations import get_iteration
from opencustomvision.domain.projects import get_project
from opencustomvision.domain.tags import list_tags
from opencustomvision.storage.models import Iteration, utcnow

router = APIRouter()
RequiredIterationId = Annotated[uuid.UUID, Query(alias="iterationId")]


def _suggested(suggestion: suggestions.Suggestion, iteration: Iteration, tags: dict) -> schemas.SuggestedTagAndRegion:  # type: ignore[type-arg]
    return schemas.SuggestedTagAndRegion(
        id=uuid.UUID(suggestion.image.id), project=uuid.UUID(iteration.project_id), iteration=uuid.UUID(iteration.id),
        created=utcnow(), predictions=present_predictions(suggestion.ranked, tags, boxes=suggestion.boxes), prediction_uncertainty=suggestion.uncertainty,
    )


@router.post("/projects/{project_id:uuid}/tagsandregions/suggestions")
def suggest_tags_and_regions(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                             resource: TrainingResource, iteration_id: RequiredIterationId,
                             image_ids: Annotated[list[str], Depends(uuid_list("imageIds"))]) -> Response:
    project = get_project(session, resource.id, project_id)
    iteration = get_iteration(session, project, iteration_id)
    found = suggestions.suggest_for_images(session, services.scorer, project, iteration, image_ids)
    tags = {tag.id: tag for tag in list_tags(session, project)}
    return render(request, [_suggested(s, iteration, tags) for s in found], items=schemas.SuggestedTagAndRegion)


@router.post("/projects/{project_id:uuid}/images/suggested")
async def query_suggested_images(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                                 resource: TrainingResource, links: Links, iteration_id: RequiredIterationId) -> Response:
    token = await read_body(request, schemas.SuggestedTagAndRegionQueryToken)

    def run() -> schemas.SuggestedTagAndRegionQuery:
        project = get_project(session, resource.id, project_id)
        iteration = get_iteration(session, project, iteration_id)
        found, continuation = suggestions.query_suggested(
            session, services.scorer, project, iteration, tag_ids=[str(t) for t in token.tag_ids or []],
            threshold=token.threshold if token.threshold is not None else 0.0, sort_by=token.sort_by,
            max_count=token.max_count if token.max_count is not None else 50, continuation=token.continuation)
        tags = {tag.id: tag for tag in list_tags(session, project)}
        results = []
        for suggestion in found:
            image = suggestion.image
            results.append(schemas.StoredSuggestedTagAndRegion(
                **_suggested(suggestion, iteration, tags).model_dump(),
                width=image.width, height=image.height, resized_image_uri=links.url(image.resized_key),
                thumbnail_uri=links.url(image.thumbnail_key), original_image_uri=links.url(image.original_key),
                domain=uuid.UUID(iteration.domain_id)))
        next_token = token.model_copy(update={"continuation": continuation}) if continuation else None
        return schemas.SuggestedTagAndRegionQuery(token=next_token, results=results)

    return render(request, await run_in_threadpool(run))


@router.post("/projects/{project_id:uuid}/images/suggested/count")
async def query_suggested_image_count(request: Request, project_id: uuid.UUID, session: SessionDep, services: ServicesDep,
                                      resource: TrainingResource, iteration_id: RequiredIterationId) -> Response:
    query = await read_body(request, schemas.TagFilter)

    def run() -> schemas.TagCounts:
        project = get_project(session, resource.id, project_id)
        iteration = get_iteration(session, project, iteration_id)
        counts = suggestions.count_suggested(session, services.scorer, project, iteration,
                                             tag_ids=[str(t) for t in query.tag_ids or []],
                                             threshold=query.threshold if query.threshold is not None else 0.0)
        return schemas.TagCounts(counts)

    return render(request, await run_in_threadpool(run))

"""The smart labeler: a trained iteration suggests tags (and, for object detection, regions) for untagged images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import exists, not_, select
from sqlalchemy.orm import Session

from opencustomvision.domain import limits
from opencustomvision.domain.catalog import is_detection
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.images import Box, check_ids
from opencustomvision.domain.iterations import COMPLETED
from opencustomvision.domain.paging import page
from opencustomvision.storage.models import Image, ImageTag, Iteration, Project

MAX_SUGGESTIONS = 256


class ImageScorer(Protocol):
    def rank(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float]]]: ...

    def detect(self, session: Session, model_key: str, image_ids: list[str]) -> list[list[tuple[str, float, Box]]]: ...


@dataclass(frozen=True)
class Suggestion:
    image: Image
    ranked: list[tuple[str, float]]
    boxes: list[Box] | None = None  # object detection: the suggested region of each ranked prediction

    @property
    def uncertainty(self) -> float:
        # How unsure the model is: 0 when one tag is certain, 1 when no tag stands out.
        return 1.0 - (self.ranked[0][1] if self.ranked else 0.0)


def _trained(iteration: Iteration) -> str:
    if iteration.status != COMPLETED or iteration.model_key is None:
        raise DomainError("BadRequestIterationIsNotTrained", f"Iteration {iteration.id} has not completed training.")
    return iteration.model_key


def _untagged(session: Session, project: Project, image_ids: Sequence[str] | None = None) -> list[Image]:
    statement = select(Image).where(Image.project_id == project.id, not_(exists().where(ImageTag.image_id == Image.id)))
    if image_ids is not None:
        statement = statement.where(Image.id.in_(image_ids))
    return list(session.scalars(statement.order_by(Image.created.desc(), Image.id)))


def suggest(session: Session, scorer: ImageScorer, project: Project, iteration: Iteration,
            images: list[Image]) -> list[Suggestion]:
    model_key, image_ids = _trained(iteration), [image.id for image in images]
    if is_detection(iteration.domain_id):
        found = scorer.detect(session, model_key, image_ids)
        return [Suggestion(image, [(tag_id, p) for tag_id, p, _ in regions], [box for _, _, box in regions])
                for image, regions in zip(images, found)]
    ranked = scorer.rank(session, model_key, image_ids)
    return [Suggestion(image, predictions) for image, predictions in zip(images, ranked)]


def suggest_for_images(session: Session, scorer: ImageScorer, project: Project, iteration: Iteration,
                       image_ids: Sequence[str]) -> list[Suggestion]:
    ids = check_ids(image_ids, what="images", limit=limits.MAX_IMAGES_PER_BATCH)
    if not ids:
        raise DomainError("BadRequestRequiredParamIsNull", "Give the ids of the untagged images to suggest tags for.")
    return suggest(session, scorer, project, iteration, _untagged(session, project, ids))


def query_suggested(
    session: Session, scorer: ImageScorer, project: Project, iteration: Iteration, *, tag_ids: Sequence[str],
    threshold: float, sort_by: str | None, max_count: int, continuation: str | None,
) -> tuple[list[Suggestion], str | None]:
    """Untagged images the model gives one of ``tag_ids`` at least ``threshold``, a page at a time."""
    if not 0 < max_count <= MAX_SUGGESTIONS:
        raise DomainError("BadRequest", f"maxCount is 1 to {MAX_SUGGESTIONS}.")
    matching = [s for s in suggest(session, scorer, project, iteration, _untagged(session, project))
                if _passes(s, tag_ids, threshold)]
    if sort_by == "UncertaintyAscending":
        matching.sort(key=lambda s: s.uncertainty)
    elif sort_by == "UncertaintyDescending":
        matching.sort(key=lambda s: -s.uncertainty)
    return page(matching, continuation, max_count, error_code="BadRequest")


def _passes(suggestion: Suggestion, tag_ids: Sequence[str], threshold: float) -> bool:
    wanted = set(tag_ids)
    return any(probability >= threshold for tag_id, probability in suggestion.ranked if not wanted or tag_id in wanted)


def count_suggested(session: Session, scorer: ImageScorer, project: Project, iteration: Iteration, *,
                    tag_ids: Sequence[str], threshold: float) -> dict[str, int]:
    suggestions = suggest(session, scorer, project, iteration, _untagged(session, project))
    wanted = list(tag_ids) or sorted({tag_id for s in suggestions for tag_id, _ in s.ranked})
    return {tag_id: sum(1 for s in suggestions if any(t == tag_id and p >= threshold for t, p in s.ranked)) for tag_id in wanted}

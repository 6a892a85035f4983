"""An iteration's honest performance: metrics over its out-of-fold predictions, at any threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.iterations import COMPLETED
from opencustomvision.ml.metrics import PerformanceReport, performance_report
from opencustomvision.storage.models import Image, Iteration, IterationImage, Tag


def _members(session: Session, iteration: Iteration) -> list[IterationImage]:
    if iteration.status != COMPLETED:
        raise DomainError("NotFoundIterationPerformance", f"Iteration {iteration.id} has not completed training.")
    query = select(IterationImage).where(IterationImage.iteration_id == iteration.id, IterationImage.predictions.is_not(None))
    return list(session.scalars(query))


def _tag_names(session: Session, iteration: Iteration) -> dict[str, str]:
    return {tag.id: tag.name for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}


def iteration_performance(session: Session, iteration: Iteration, threshold: float) -> PerformanceReport:
    members = _members(session, iteration)
    names = _tag_names(session, iteration)
    tag_ids = sorted({tag_id for member in members for tag_id in (member.predictions or {}) if tag_id in names},
                     key=lambda tag_id: names[tag_id])
    probabilities = np.array([[member.predictions.get(tag_id, 0.0) for tag_id in tag_ids] for member in members])  # type: ignore[union-attr]
    labels = np.array([[1.0 if tag_id in member.tag_ids else 0.0 for tag_id in tag_ids] for member in members])
    folds = np.array([member.fold or 0 for member in members])
    report = performance_report(probabilities.reshape(len(members), len(tag_ids)), labels.reshape(len(members), len(tag_ids)),
                                folds, tag_ids, threshold=threshold)
    for tag in report.per_tag:
        tag.name = names[tag.tag_id]
    return report


def image_performances(
    session: Session, iteration: Iteration, tag_ids: Sequence[str], *, order_by: str = "Newest"
) -> list[tuple[Image, list[tuple[str, str, float]]]]:
    """Each evaluated image with what the model, trained without it, predicted for it."""
    members = _members(session, iteration)
    if tag_ids:
        wanted = set(tag_ids)
        members = [member for member in members if wanted & set(member.tag_ids)]
    names = _tag_names(session, iteration)
    images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_([m.image_id for m in members])))}
    rows = []
    for member in members:
        predictions = sorted(
            ((tag_id, names[tag_id], probability) for tag_id, probability in (member.predictions or {}).items() if tag_id in names),
            key=lambda prediction: -prediction[2],
        )
        rows.append((images[member.image_id], predictions))
    rows.sort(key=lambda row: (row[0].created, row[0].id), reverse=order_by != "Oldest")
    return rows

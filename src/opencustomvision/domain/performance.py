"""An iteration's honest performance: metrics over its out-of-fold predictions, at any threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from opencustomvision.domain.catalog import is_detection
from opencustomvision.domain.errors import DomainError
from opencustomvision.domain.images import Box, images_by_id
from opencustomvision.domain.iterations import COMPLETED
from opencustomvision.ml.detection.average_precision import evaluate_detections
from opencustomvision.ml.metrics import PerformanceReport, TagPerformance, performance_report
from opencustomvision.storage.models import Image, Iteration, IterationImage, Tag


# An image's evaluated predictions: (tag id, tag name, probability, box or None for classification)
ImagePredictions = list[tuple[str, str, float, Box | None]]


def _members(session: Session, iteration: Iteration) -> list[IterationImage]:
    """The snapshot images a model trained without them judged (all of them for classification)."""
    if iteration.status != COMPLETED:
        raise DomainError("NotFoundIterationPerformance", f"Iteration {iteration.id} has not completed training.")
    judged = IterationImage.detections if is_detection(iteration.domain_id) else IterationImage.predictions
    query = select(IterationImage).where(IterationImage.iteration_id == iteration.id, judged.is_not(None))
    return list(session.scalars(query))


def _tag_names(session: Session, iteration: Iteration) -> dict[str, str]:
    return {tag.id: tag.name for tag in session.scalars(select(Tag).where(Tag.project_id == iteration.project_id))}


def iteration_performance(session: Session, iteration: Iteration, threshold: float, overlap_threshold: float = 0.3) -> PerformanceReport:
    if is_detection(iteration.domain_id):
        return _detection_performance(session, iteration, threshold, overlap_threshold)
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


def _detection_performance(session: Session, iteration: Iteration, threshold: float, overlap_threshold: float) -> PerformanceReport:
    """Per tag: AP at ``overlap_threshold`` (IoU), precision and recall of the boxes at ``threshold``, over the
    held-out images. Overall: the mean over tags with ground truth (AP: mean AP). One held-out fold: no spread."""
    members = _members(session, iteration)
    names = _tag_names(session, iteration)
    tag_ids = sorted({str(r[0]) for m in members for r in (m.regions or []) if r[0] in names}, key=lambda t: names[t])
    index = {tag_id: i for i, tag_id in enumerate(tag_ids)}
    predictions = [[(index[d[0]], float(d[1]), tuple(d[2:6])) for d in m.detections or [] if d[0] in index] for m in members]
    truths = [[(index[r[0]], tuple(r[1:5])) for r in m.regions or [] if r[0] in index] for m in members]
    metrics = evaluate_detections(predictions, truths, len(tag_ids), iou_threshold=overlap_threshold, probability_threshold=threshold)
    per_tag = [
        TagPerformance(tag_ids[t.tag], t.precision, 0.0, t.recall, 0.0, t.average_precision or 0.0, name=names[tag_ids[t.tag]])
        for t in metrics.per_tag
    ]
    measured = [t for t in metrics.per_tag if t.ground_truth_count > 0]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    return PerformanceReport(
        precision=mean([t.precision for t in measured]), precision_std=0.0,
        recall=mean([t.recall for t in measured]), recall_std=0.0,
        average_precision=metrics.mean_average_precision or 0.0, threshold=threshold, per_tag=per_tag,
    )


def image_performances(
    session: Session, iteration: Iteration, tag_ids: Sequence[str], *, order_by: str = "Newest"
) -> list[tuple[Image, ImagePredictions]]:
    """Each evaluated image with what the model, trained without it, predicted for it."""
    members = _members(session, iteration)
    if tag_ids:
        wanted = set(tag_ids)
        members = [member for member in members if wanted & set(member.tag_ids)]
    names = _tag_names(session, iteration)
    images = images_by_id(session, [m.image_id for m in members])
    rows = []
    for member in members:
        if member.detections is not None:
            found: ImagePredictions = [(d[0], names[d[0]], float(d[1]), tuple(d[2:6])) for d in member.detections if d[0] in names]
        else:
            found = [(tag_id, names[tag_id], p, None) for tag_id, p in (member.predictions or {}).items() if tag_id in names]
        predictions = sorted(found, key=lambda prediction: -prediction[2])
        rows.append((images[member.image_id], predictions))
    rows.sort(key=lambda row: (row[0].created, row[0].id), reverse=order_by != "Oldest")
    return rows

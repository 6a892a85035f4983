"""Detection quality as Custom Vision reports it: per-tag precision, recall and average precision.

Matching follows Pascal VOC: for each tag, every detection of every image is taken in
descending probability; it is a true positive when its best-overlapping ground-truth box
of that tag in its image has IoU >= ``iou_threshold`` and was not matched before, and a
false positive otherwise (a second detection of an already found object is a duplicate,
hence false). AP is the area under the precision envelope (precision made monotonically
non-increasing), integrated at every recall step ("all-point" interpolation, VOC 2010+).

Custom Vision has no "difficult" or "crowd" flag, so neither is modelled: every ground
truth counts. Tags without any ground truth have no AP and are left out of the mean.

Inputs use the detector's own formats: a prediction is ``(tag, probability, (left, top,
width, height))`` and a ground truth ``(tag, (left, top, width, height))``, both normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from opencustomvision.ml.detection.boxes import ltwh_to_xyxy, pairwise_iou

__all__ = [
    "DetectionMetrics",
    "GroundTruth",
    "Prediction",
    "TagMetrics",
    "average_precision",
    "evaluate_detections",
]

Box = tuple[float, float, float, float]
Prediction = tuple[int, float, Box]  # (tag, probability, ltwh)
GroundTruth = tuple[int, Box]  # (tag, ltwh)


@dataclass(frozen=True)
class TagMetrics:
    tag: int
    precision: float  # of the detections with probability >= the threshold
    recall: float  # at the same threshold
    average_precision: float | None  # None when the tag has no ground truth
    ground_truth_count: int


@dataclass(frozen=True)
class DetectionMetrics:
    per_tag: list[TagMetrics]
    iou_threshold: float
    probability_threshold: float

    @property
    def mean_average_precision(self) -> float | None:
        """Mean over the tags that have ground truth; None when none has."""
        values = [t.average_precision for t in self.per_tag if t.average_precision is not None]
        return float(np.mean(values)) if values else None


def average_precision(scores: np.ndarray, is_true_positive: np.ndarray, ground_truth_count: int) -> float:
    """All-point interpolated AP of ranked detections, each already marked true or false positive."""
    if ground_truth_count <= 0:
        raise ValueError("average precision needs at least one ground truth")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = np.asarray(is_true_positive, dtype=bool)[order]
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, len(hits) + 1)
    recall = true_positives / ground_truth_count
    # Sentinels: recall starts at 0 and the envelope ends at precision 0 past the last detection.
    recall = np.concatenate([[0.0], recall])
    envelope = np.concatenate([precision, [0.0]])
    envelope = np.maximum.accumulate(envelope[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * envelope[:-1]))


def evaluate_detections(
    predictions: Sequence[Sequence[Prediction]],
    ground_truths: Sequence[Sequence[GroundTruth]],
    tag_count: int,
    *,
    iou_threshold: float = 0.5,
    probability_threshold: float = 0.5,
) -> DetectionMetrics:
    """Per-tag AP at ``iou_threshold``, and precision/recall of the detections at ``probability_threshold``.

    ``predictions[i]`` and ``ground_truths[i]`` belong to image i.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} prediction lists for {len(ground_truths)} images")
    per_tag = [
        _evaluate_tag(tag, predictions, ground_truths, iou_threshold, probability_threshold)
        for tag in range(tag_count)
    ]
    return DetectionMetrics(per_tag, iou_threshold, probability_threshold)


def _evaluate_tag(
    tag: int,
    predictions: Sequence[Sequence[Prediction]],
    ground_truths: Sequence[Sequence[GroundTruth]],
    iou_threshold: float,
    probability_threshold: float,
) -> TagMetrics:
    truth_boxes = [ltwh_to_xyxy([box for t, box in image if t == tag]) for image in ground_truths]
    ground_truth_count = sum(len(boxes) for boxes in truth_boxes)
    detections = [
        (probability, image_index, box)
        for image_index, image in enumerate(predictions)
        for t, probability, box in image
        if t == tag
    ]
    detections.sort(key=lambda d: -d[0])  # stable: equal probabilities keep their input order

    matched = [np.zeros(len(boxes), dtype=bool) for boxes in truth_boxes]
    scores = np.array([d[0] for d in detections], dtype=np.float64)
    hits = np.zeros(len(detections), dtype=bool)
    for k, (_, image_index, box) in enumerate(detections):
        candidates = truth_boxes[image_index]
        if len(candidates) == 0:
            continue
        overlaps = pairwise_iou(ltwh_to_xyxy([box]), candidates)[0]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold and not matched[image_index][best]:
            matched[image_index][best] = True
            hits[k] = True

    above = scores >= probability_threshold
    found = int(np.count_nonzero(hits & above))
    reported = int(np.count_nonzero(above))
    return TagMetrics(
        tag=tag,
        precision=found / reported if reported else 0.0,
        recall=found / ground_truth_count if ground_truth_count else 0.0,
        average_precision=average_precision(scores, hits, ground_truth_count) if ground_truth_count else None,
        ground_truth_count=ground_truth_count,
    )

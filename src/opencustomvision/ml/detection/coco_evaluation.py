"""COCO-style detection metrics from pycocotools, on the detector's own prediction and ground-truth formats.

``average_precision`` is Custom Vision's measure (Pascal VOC, IoU 0.5, all-point interpolation). Comparing
detectors needs more than one IoU: COCO's mAP@[.5:.95] rewards tight boxes, and COCO splits objects by
size (small < 32², medium < 96², large, in pixels of the original image). Those come from the maintained
reference implementation, not a copy: ``pycocotools.cocoeval.COCOeval``, with its standard parameters
(101-point interpolation, at most 100 detections per image, every category with ground truth averaged).

Inputs as for ``evaluate_detections``, plus each image's size in pixels: boxes are normalised here and the
size ranges are in pixels.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from opencustomvision.ml.detection.average_precision import GroundTruth, Prediction

__all__ = ["CocoMetrics", "coco_evaluation"]


@dataclass(frozen=True)
class CocoMetrics:
    """COCOeval's summary; None where COCO has nothing to average (e.g. no small objects)."""

    map_50_95: float | None  # mAP@[.5:.95], COCO's headline figure
    map_50: float | None
    map_75: float | None
    map_small: float | None
    map_medium: float | None
    map_large: float | None
    objects_by_size: tuple[int, int, int]  # ground truths that are small, medium, large


def coco_evaluation(
    predictions: Sequence[Sequence[Prediction]],
    ground_truths: Sequence[Sequence[GroundTruth]],
    image_sizes: Sequence[tuple[int, int]],
    tag_count: int,
) -> CocoMetrics:
    """COCO metrics of ``predictions[i]`` against ``ground_truths[i]`` on image i of ``image_sizes[i]`` (w, h)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not len(predictions) == len(ground_truths) == len(image_sizes):
        raise ValueError(f"{len(predictions)} prediction lists, {len(ground_truths)} ground truths, {len(image_sizes)} sizes")
    annotations, detections = [], []
    for index, ((width, height), truths, found) in enumerate(zip(image_sizes, ground_truths, predictions, strict=True)):
        for tag, box in truths:
            pixels = _pixels(box, width, height)
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": tag + 1,
                                "bbox": pixels, "area": pixels[2] * pixels[3], "iscrowd": 0})
        for tag, probability, box in found:
            detections.append({"image_id": index + 1, "category_id": tag + 1, "bbox": _pixels(box, width, height),
                               "score": float(probability)})
    sizes = np.array([a["area"] for a in annotations], dtype=np.float64)
    objects_by_size = (int(np.sum(sizes < 32**2)), int(np.sum((sizes >= 32**2) & (sizes < 96**2))), int(np.sum(sizes >= 96**2)))
    if not annotations:
        raise ValueError("COCO metrics need at least one ground truth")
    if not detections:
        zero = 0.0
        return CocoMetrics(zero, zero, zero, *(zero if n else None for n in objects_by_size), objects_by_size)

    truth = COCO()
    truth.dataset = {
        "images": [{"id": i + 1, "width": w, "height": h} for i, (w, h) in enumerate(image_sizes)],
        "annotations": annotations,
        "categories": [{"id": t + 1, "name": str(t)} for t in range(tag_count)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and its table
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = [None if value < 0 else float(value) for value in evaluation.stats[:6]]
    return CocoMetrics(*stats, objects_by_size=objects_by_size)


def _pixels(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    left, top, box_width, box_height = box
    return [left * width, top * height, box_width * width, box_height * height]

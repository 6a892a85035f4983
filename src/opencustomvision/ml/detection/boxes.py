"""Axis-aligned boxes as float arrays, and the operations detection needs on them.

Two layouts appear: Custom Vision's ``[left, top, width, height]`` ("ltwh", normalised
0..1 to the image) at the API boundary, and ``[x1, y1, x2, y2]`` ("xyxy") everywhere
inside, because overlaps, clipping and flips are simplest on corners. Arrays are (N, 4);
nothing here cares about the unit (pixels or fractions) as long as it is the same.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "box_area",
    "clip_boxes",
    "decode_distances",
    "encode_distances",
    "ltwh_to_xyxy",
    "non_maximum_suppression",
    "pairwise_iou",
    "per_class_non_maximum_suppression",
    "xyxy_to_ltwh",
]


def _as_boxes(boxes: np.ndarray | list) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4), got shape {array.shape}")
    return array


def ltwh_to_xyxy(boxes: np.ndarray | list) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_to_ltwh(boxes: np.ndarray | list) -> np.ndarray:
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def box_area(boxes: np.ndarray | list) -> np.ndarray:
    """Areas of xyxy boxes; a box with x2 < x1 or y2 < y1 has area 0, not a negative one."""
    boxes = _as_boxes(boxes)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def clip_boxes(boxes: np.ndarray | list, width: float = 1.0, height: float = 1.0) -> np.ndarray:
    """xyxy boxes limited to the image ``[0, width] x [0, height]``."""
    boxes = _as_boxes(boxes).copy()
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0.0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0.0, height)
    return boxes


def pairwise_iou(a: np.ndarray | list, b: np.ndarray | list) -> np.ndarray:
    """(N, M) intersection over union of every xyxy box in ``a`` with every one in ``b``.

    Two empty boxes have IoU 0 (not NaN): they cannot be a match.
    """
    a = _as_boxes(a)
    b = _as_boxes(b)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    sides = np.clip(bottom_right - top_left, 0, None)
    intersection = sides[..., 0] * sides[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def non_maximum_suppression(
    boxes: np.ndarray | list, scores: np.ndarray | list, iou_threshold: float, max_kept: int | None = None
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. Ties in score keep the earlier index (stable sort), so results
    do not depend on the sort implementation. ``max_kept`` stops early: the first
    ``max_kept`` survivors do not depend on what comes after them.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(boxes),):
        raise ValueError(f"{len(boxes)} boxes but scores of shape {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    # One-against-the-rest IoU written out on precomputed columns: this loop runs once per kept
    # box on the prediction path, and pairwise_iou's general broadcasting costs 5x more per call.
    x1, y1, x2, y2 = boxes.T
    areas = box_area(boxes)
    keep: list[int] = []
    while order.size and (max_kept is None or len(keep) < max_kept):
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        intersection = width * height
        union = areas[best] + areas[rest] - intersection
        overlaps = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
        order = rest[overlaps <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def per_class_non_maximum_suppression(
    boxes: np.ndarray | list,
    scores: np.ndarray | list,
    classes: np.ndarray | list,
    iou_threshold: float,
    max_kept: int | None = None,
) -> np.ndarray:
    """Greedy NMS run separately for each class: boxes of different classes never suppress each other.

    Returns the kept indices sorted by score, highest first, at most ``max_kept`` of them.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    classes = np.asarray(classes)
    if classes.shape != scores.shape:
        raise ValueError(f"classes of shape {classes.shape} but scores of shape {scores.shape}")
    kept = [
        members[non_maximum_suppression(boxes[members], scores[members], iou_threshold, max_kept)]
        for members in (np.flatnonzero(classes == c) for c in np.unique(classes))
    ]
    if not kept:
        return np.empty(0, dtype=np.int64)
    indices = np.concatenate(kept)
    return indices[np.argsort(-scores[indices], kind="stable")][:max_kept]


def encode_distances(points: np.ndarray, boxes: np.ndarray | list, scales: np.ndarray) -> np.ndarray:
    """FCOS box coding: the distances (left, top, right, bottom) from each point to its box's sides.

    ``points`` (N, 2) are (x, y), ``boxes`` (N, 4) xyxy, one per point, ``scales`` (N,) divides
    the distances (the stride of the point's feature level), so targets stay near 1 at every level.
    Points outside their box get negative distances: callers assign only points inside.
    """
    boxes = _as_boxes(boxes)
    points = np.asarray(points, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)[:, None]
    return np.concatenate([points - boxes[:, :2], boxes[:, 2:] - points], axis=1) / scales


def decode_distances(points: np.ndarray, distances: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The inverse of ``encode_distances``: xyxy boxes from points and scaled (l, t, r, b) distances."""
    points = np.asarray(points, dtype=np.float64)
    distances = np.asarray(distances, dtype=np.float64) * np.asarray(scales, dtype=np.float64)[:, None]
    return np.concatenate([points - distances[:, :2], points + distances[:, 2:]], axis=1)

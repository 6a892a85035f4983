"""Where the head predicts, and what it should predict there (ATSS assignment).

Every cell of every feature level is a "point" at the cell's centre, in input pixels, standing for a
square anchor of ``ANCHOR_SCALE`` strides. A box's positives are chosen by ATSS (below): a threshold
on anchor overlap that adapts to each box, so no size range per level is fitted to a data set. When
several boxes claim a point, the one its anchor overlaps most wins. The targets are the box's class and
its sides as distances from the point in units of the level's stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opencustomvision.ml.detection.boxes import encode_distances, pairwise_iou

__all__ = ["AnchorPoints", "Targets", "anchor_points", "assign_targets_atss"]



@dataclass(frozen=True)
class AnchorPoints:
    xy: np.ndarray  # (L, 2) float64 cell centres in input pixels, level by level, row-major
    strides: np.ndarray  # (L,) float64, each point's level stride
    level_sizes: tuple[int, ...]  # points per level

    def __len__(self) -> int:
        return len(self.strides)


@dataclass(frozen=True)
class Targets:
    classes: np.ndarray  # (L,) int64 class index, -1 for background
    distances: np.ndarray  # (L, 4) float32 (left, top, right, bottom) / stride; 0 on background


def anchor_points(input_size: int, strides: tuple[int, ...]) -> AnchorPoints:
    """The points of a square input of ``input_size`` pixels, one per cell of each stride's map."""
    xy_levels, stride_levels, sizes = [], [], []
    for stride in strides:
        cells = input_size // stride
        centres = (np.arange(cells, dtype=np.float64) + 0.5) * stride
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        xy_levels.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        stride_levels.append(np.full(cells * cells, float(stride)))
        sizes.append(cells * cells)
    return AnchorPoints(np.concatenate(xy_levels), np.concatenate(stride_levels), tuple(sizes))


# ATSS (Zhang et al., 2020): each point stands for a square anchor of ANCHOR_SCALE strides (NanoDet's 5 for
# 320 px inputs); per level the TOP_K points nearest a box's centre are candidates, and the candidates whose
# anchor overlaps the box by at least the mean + standard deviation of their overlaps (and whose point lies
# inside the box) are positives. The threshold adapts to each box, so no size range is tuned to a data set.
ANCHOR_SCALE = 5.0
TOP_K = 9


def assign_targets_atss(points: AnchorPoints, boxes: np.ndarray, classes: np.ndarray) -> Targets:
    """ATSS targets for one image: ``boxes`` (G, 4) xyxy in input pixels, ``classes`` (G,) their tags."""
    count = len(points)
    target_classes = np.full(count, -1, dtype=np.int64)
    target_distances = np.zeros((count, 4), dtype=np.float32)
    if len(boxes) == 0:
        return Targets(target_classes, target_distances)

    boxes = np.asarray(boxes, dtype=np.float64)
    xy, strides = points.xy, points.strides
    half = ANCHOR_SCALE * strides / 2
    anchors = np.concatenate([xy - half[:, None], xy + half[:, None]], axis=1)
    overlaps = pairwise_iou(anchors, boxes)  # (L, G)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distance = np.linalg.norm(xy[:, None, :] - centres[None], axis=2)  # (L, G)

    candidate = np.zeros_like(overlaps, dtype=bool)
    start = 0
    for size in points.level_sizes:
        level = slice(start, start + size)
        k = min(TOP_K, size)
        nearest = np.argpartition(distance[level], k - 1, axis=0)[:k]  # (k, G)
        np.put_along_axis(candidate[level], nearest, True, axis=0)
        start += size
    candidate_overlaps = np.where(candidate, overlaps, np.nan)
    threshold = np.nanmean(candidate_overlaps, axis=0) + np.nanstd(candidate_overlaps, axis=0)  # (G,)
    sides = np.concatenate([xy[:, None, :] - boxes[None, :, :2], boxes[None, :, 2:] - xy[:, None, :]], axis=2)
    inside = sides.min(axis=2) > 0
    positive_pairs = candidate & (overlaps >= threshold[None]) & inside
    # A box too small to hold a point inside still gets one positive: its best candidate.
    for g in np.flatnonzero(~positive_pairs.any(axis=0)):
        positive_pairs[np.nanargmax(candidate_overlaps[:, g]), g] = True

    scored = np.where(positive_pairs, overlaps, -1.0)
    chosen = scored.argmax(axis=1)
    positive = scored.max(axis=1) >= 0
    index = np.flatnonzero(positive)
    box_index = chosen[index]
    target_classes[index] = np.asarray(classes)[box_index]
    target_distances[index] = np.clip(encode_distances(xy[index], boxes[box_index], strides[index]), 0, None)
    return Targets(target_classes, target_distances)

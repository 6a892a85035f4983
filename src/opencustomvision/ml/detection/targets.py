"""Where the head predicts, and what it should predict there (FCOS-style assignment).

Every cell of every feature level is a "point" at the cell's centre, in input pixels.
A point is a positive for a ground-truth box when it lies inside the box, within
``CENTER_RADIUS`` strides of the box centre (centre sampling: border points see mostly
background), and the box's size suits the point's level (its largest point-to-side
distance falls in the level's range). When several boxes claim a point, the smallest
wins. The targets are the box's class, its sides as distances from the point in units
of the level's stride, and the centre-ness that down-weights off-centre predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opencustomvision.ml.detection.boxes import box_area, encode_distances

__all__ = ["AnchorPoints", "Targets", "anchor_points", "assign_targets"]

CENTER_RADIUS = 1.5  # in strides, FCOS's centre-sampling radius
# A level takes boxes whose largest point-to-side distance is below 8 strides (FCOS's 64/128/...
# for strides 8/16/...); the coarsest level takes everything bigger.
RANGE_IN_STRIDES = 8


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
    centerness: np.ndarray  # (L,) float32 in [0, 1]; 0 on background


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


def assign_targets(points: AnchorPoints, boxes: np.ndarray, classes: np.ndarray) -> Targets:
    """Targets for one image: ``boxes`` (G, 4) xyxy in input pixels, ``classes`` (G,) their tags."""
    count = len(points)
    target_classes = np.full(count, -1, dtype=np.int64)
    target_distances = np.zeros((count, 4), dtype=np.float32)
    target_centerness = np.zeros(count, dtype=np.float32)
    if len(boxes) == 0:
        return Targets(target_classes, target_distances, target_centerness)

    boxes = np.asarray(boxes, dtype=np.float64)
    xy, strides = points.xy, points.strides
    # (L, G, 4) distances from every point to the sides of every box, in pixels.
    sides = np.concatenate(
        [xy[:, None, :] - boxes[None, :, :2], boxes[None, :, 2:] - xy[:, None, :]], axis=2
    )
    inside = sides.min(axis=2) > 0
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    near_centre = np.all(np.abs(xy[:, None, :] - centres[None]) < CENTER_RADIUS * strides[:, None, None], axis=2)
    reach = sides.max(axis=2)
    coarsest = strides == strides.max()
    lower = np.where(strides == strides.min(), 0.0, strides / 2 * RANGE_IN_STRIDES)
    upper = np.where(coarsest, np.inf, strides * RANGE_IN_STRIDES)
    fits_level = (reach >= lower[:, None]) & (reach < upper[:, None])
    candidate = inside & near_centre & fits_level

    areas = np.where(candidate, box_area(boxes)[None, :], np.inf)
    chosen = areas.argmin(axis=1)
    positive = np.isfinite(areas.min(axis=1))
    if not positive.any():
        return Targets(target_classes, target_distances, target_centerness)

    index = np.flatnonzero(positive)
    box_index = chosen[index]
    target_classes[index] = np.asarray(classes)[box_index]
    target_distances[index] = encode_distances(xy[index], boxes[box_index], strides[index])
    left, top, right, bottom = target_distances[index].T
    target_centerness[index] = np.sqrt(
        (np.minimum(left, right) / np.maximum(left, right)) * (np.minimum(top, bottom) / np.maximum(top, bottom))
    )
    return Targets(target_classes, target_distances, target_centerness)

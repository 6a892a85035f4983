"""The training views of a detector's images, through the frozen backbone once, with their targets.

For every image: the plain view and ``views_per_image - 1`` random ones (crop or zoom-out, aspect
jitter, flip, colour; ``augment.py``), run through the multi-scale ONNX backbone and kept in float16,
with each view's boxes assigned to the head's points (``targets.py``). Torch-free: the views of one set
of images serve every detector trained on it or on a subset of it (the service trains one without a
held-out fifth, then one on all).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from opencustomvision.ml.detection.augment import AugmentationSettings, identity_view, random_view
from opencustomvision.ml.detection.features import FEATURE_NAMES, FeatureExtractor, normalise_pixels
from opencustomvision.ml.detection.targets import anchor_points, assign_targets_atss

__all__ = ["MAX_CACHED_VIEWS", "TrainingViews", "cache_views"]

logger = logging.getLogger(__name__)

FEATURE_BATCH = 16  # views per backbone call while caching
# Cached views are ~0.5 MB each at 320 px: this caps the cache near 2 GB for big projects.
MAX_CACHED_VIEWS = 4096


@dataclass(frozen=True)
class TrainingViews:
    features: list[np.ndarray]  # per level (V, C, h, w) float16
    classes: np.ndarray  # (V, L) int64: each point's target tag, -1 for background
    distances: np.ndarray  # (V, L, 4) float32: (left, top, right, bottom) in strides; 0 on background
    boxes: list[np.ndarray]  # per view (G, 4) xyxy in input pixels, and their tags: what the targets came from
    box_classes: list[np.ndarray]
    image_of_view: np.ndarray  # (V,) the source image of each view
    seconds: float  # how long caching took

    def views_of(self, image: int) -> np.ndarray:
        return np.flatnonzero(self.image_of_view == image)


def cache_views(
    images: Sequence[Image.Image],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    input_size: int,
    strides: tuple[int, ...],
    extractor: FeatureExtractor,
    views_per_image: int,
    augmentation: AugmentationSettings,
    seed: int,
) -> TrainingViews:
    """Views of each image (``boxes[i]`` (G, 4) normalised xyxy, ``classes[i]`` (G,) tags), at most MAX_CACHED_VIEWS."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    views = max(1, min(views_per_image, MAX_CACHED_VIEWS // max(len(images), 1)))
    points = anchor_points(input_size, strides)
    pending: list[np.ndarray] = []
    levels: list[list[np.ndarray]] = [[] for _ in FEATURE_NAMES]
    view_boxes: list[np.ndarray] = []
    view_classes: list[np.ndarray] = []
    image_of_view: list[int] = []

    def flush() -> None:
        for level, output in zip(levels, extractor.run(np.stack(pending)), strict=True):
            level.append(output.astype(np.float16))
        pending.clear()

    for index, (image, image_boxes, image_classes) in enumerate(zip(images, boxes, classes, strict=True)):
        for view_number in range(views):
            if view_number == 0:
                view, moved = identity_view(image, image_boxes, input_size)
                kept_classes = np.asarray(image_classes)
            else:
                view, moved, kept = random_view(image, image_boxes, input_size, rng, augmentation)
                kept_classes = np.asarray(image_classes)[kept]
            pending.append(normalise_pixels(view))
            view_boxes.append(moved * input_size)
            view_classes.append(kept_classes)
            image_of_view.append(index)
            if len(pending) == FEATURE_BATCH:
                flush()
    if pending:
        flush()
    targets = [assign_targets_atss(points, b, c) for b, c in zip(view_boxes, view_classes, strict=True)]
    seconds = time.perf_counter() - started
    logger.info("cached %d views of %d images in %.1f s", len(image_of_view), len(images), seconds)
    return TrainingViews(
        features=[np.concatenate(level) for level in levels],
        classes=np.stack([t.classes for t in targets]),
        distances=np.stack([t.distances for t in targets]),
        boxes=view_boxes,
        box_classes=view_classes,
        image_of_view=np.asarray(image_of_view),
        seconds=seconds,
    )

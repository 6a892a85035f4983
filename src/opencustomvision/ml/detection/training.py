"""Fitting the detection head on cached backbone features (torch, CPU).

The backbone stays frozen, so its features are computed once: for every training image,
the plain view plus ``views_per_image - 1`` random augmented views (crop/zoom-out,
aspect jitter, flip, colour) go through the ONNX backbone and are kept in float16. Each
epoch then draws one cached view per image and trains only the head on it, which makes
an epoch ~50x cheaper than running the backbone, at the price of a fixed pool of
augmentations instead of fresh ones every epoch.

The number of epochs follows the time budget: after every epoch, the remaining time and
the median epoch so far decide how many more fit (capped at ``max_epochs``), and the
cosine learning-rate schedule is laid over that many, so a short budget still ends at a
low learning rate.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from opencustomvision.ml.backbone import export_module
from opencustomvision.ml.detection.augment import (
    AugmentationSettings,
    identity_view,
    random_view,
)
from opencustomvision.ml.detection.features import (
    FEATURE_NAMES,
    FeatureExtractor,
    normalise_pixels,
)
from opencustomvision.ml.detection.head import (
    DetectionHead,
    ExportedHead,
    detection_loss,
)
from opencustomvision.ml.detection.model import (
    DISTANCES_OUTPUT,
    SCORES_OUTPUT,
    DetectionModel,
    DetectorConfig,
)
from opencustomvision.ml.detection.settings import TrainingSettings
from opencustomvision.ml.detection.targets import Targets, anchor_points, assign_targets

__all__ = ["EpochReport", "export_head", "train_head"]

logger = logging.getLogger(__name__)

FEATURE_BATCH = 16  # images per backbone call while caching
# Cached views are ~0.5 MB each at 320 px: this caps the cache near 2 GB for big projects.
MAX_CACHED_VIEWS = 4096


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    planned_epochs: int
    loss: float  # mean total loss over the epoch's batches
    loss_terms: dict[str, float]  # focal, giou, centerness means
    seconds: float  # training time so far, callbacks excluded
    snapshot: Callable[[], DetectionModel]  # a prediction model of the head as it is when called


@dataclass
class _Cache:
    features: list[np.ndarray]  # per level (V, C, h, w) float16
    targets: list[Targets]  # per view
    image_of_view: np.ndarray  # (V,) index of the source image


def train_head(
    images: Sequence[Image.Image],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    config: DetectorConfig,
    extractor: FeatureExtractor,
    settings: TrainingSettings,
    *,
    seed: int,
    time_budget_seconds: float,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> DetectionHead:
    """Train a head for ``config``; ``boxes[i]`` (G, 4) normalised xyxy, ``classes[i]`` (G,) tags of image i."""
    started = time.perf_counter()
    paused = 0.0  # time spent in callbacks, which the budget does not pay for
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    views = max(1, min(settings.views_per_image, MAX_CACHED_VIEWS // max(len(images), 1)))
    cache = _cache_views(images, boxes, classes, config, extractor, views, settings.augmentation, rng)
    logger.info("cached %d views of %d images in %.1f s", len(cache.image_of_view), len(images), time.perf_counter() - started)

    head = DetectionHead(extractor.channels, config.tag_count, settings.head_width, settings.head_depth)
    optimiser = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    views_of_image = [np.flatnonzero(cache.image_of_view == i) for i in range(len(images))]
    planned = settings.max_epochs  # until the first epoch has been timed
    epoch_seconds: list[float] = []
    steps_per_epoch = math.ceil(len(images) / settings.batch_size)

    epoch = 0
    while epoch < planned:
        epoch += 1
        epoch_started = time.perf_counter()
        chosen = np.array([rng.choice(v) for v in views_of_image])[rng.permutation(len(images))]
        totals: dict[str, float] = {}
        head.train()
        for step, start in enumerate(range(0, len(chosen), settings.batch_size)):
            _set_learning_rate(optimiser, settings.learning_rate, epoch - 1 + step / steps_per_epoch, planned)
            batch = chosen[start : start + settings.batch_size]
            features = [torch.from_numpy(level[batch].astype(np.float32)) for level in cache.features]
            targets = [cache.targets[v] for v in batch]
            loss, terms = detection_loss(
                *head(*features),
                torch.from_numpy(np.stack([t.classes for t in targets])),
                torch.from_numpy(np.stack([t.distances for t in targets])),
                torch.from_numpy(np.stack([t.centerness for t in targets])),
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for name, value in {"total": loss.item(), **terms}.items():
                totals[name] = totals.get(name, 0.0) + value
        head.eval()
        elapsed = time.perf_counter() - started - paused
        epoch_seconds.append(time.perf_counter() - epoch_started)
        # Re-planned after every epoch from the median epoch so far: on a shared machine a slow
        # first epoch must not fix a short run. 5 % slack: epochs vary, and the final export is not free.
        typical = max(1.05 * float(np.median(epoch_seconds)), 1e-6)
        planned = max(epoch, min(settings.max_epochs, epoch + int((time_budget_seconds - elapsed) // typical)))
        if on_epoch is not None:
            callback_started = time.perf_counter()
            means = {name: value / steps_per_epoch for name, value in totals.items()}
            total = means.pop("total")
            on_epoch(EpochReport(epoch, planned, total, means, elapsed, lambda: _snapshot(head, config, extractor)))
            paused += time.perf_counter() - callback_started
    return head


def export_head(head: DetectionHead, config: DetectorConfig, channels: tuple[int, ...]) -> bytes:
    """The head as ONNX bytes: inputs FEATURE_NAMES for one image, outputs scores and distances."""
    examples = tuple(
        torch.zeros(1, c, config.input_size // s, config.input_size // s)
        for c, s in zip(channels, config.strides, strict=True)
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "head.onnx"
        export_module(
            ExportedHead(head).eval(),
            examples,
            path,
            input_names=list(FEATURE_NAMES),
            output_names=[SCORES_OUTPUT, DISTANCES_OUTPUT],
            dynamic_shapes=None,
            metadata={},
        )
        return path.read_bytes()


def _snapshot(head: DetectionHead, config: DetectorConfig, extractor: FeatureExtractor) -> DetectionModel:
    was_training = head.training
    head.eval()
    try:
        return DetectionModel(config, export_head(head, config, extractor.channels), extractor)
    finally:
        head.train(was_training)


def _set_learning_rate(optimiser: torch.optim.Optimizer, peak: float, progress: float, planned_epochs: int) -> None:
    # One epoch of linear warm-up (fresh heads on frozen features diverge at a cold full rate), then cosine to 0.
    if progress < 1:
        rate = peak * (0.1 + 0.9 * progress)
    else:
        rate = peak * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - 1) / max(planned_epochs - 1, 1))))
    for group in optimiser.param_groups:
        group["lr"] = rate


def _cache_views(
    images: Sequence[Image.Image],
    boxes: Sequence[np.ndarray],
    classes: Sequence[np.ndarray],
    config: DetectorConfig,
    extractor: FeatureExtractor,
    views_per_image: int,
    augmentation: AugmentationSettings,
    rng: np.random.Generator,
) -> _Cache:
    points = anchor_points(config.input_size, config.strides)
    size = config.input_size
    pending: list[np.ndarray] = []
    levels: list[list[np.ndarray]] = [[] for _ in FEATURE_NAMES]
    targets: list[Targets] = []
    image_of_view: list[int] = []

    def flush() -> None:
        for level, output in zip(levels, extractor.run(np.stack(pending)), strict=True):
            level.append(output.astype(np.float16))
        pending.clear()

    for index, (image, image_boxes, image_classes) in enumerate(zip(images, boxes, classes, strict=True)):
        for view_number in range(views_per_image):
            if view_number == 0:
                view, view_boxes = identity_view(image, image_boxes, size)
                view_classes = image_classes
            else:
                view, view_boxes, kept = random_view(image, image_boxes, size, rng, augmentation)
                view_classes = image_classes[kept]
            pending.append(normalise_pixels(view))
            targets.append(assign_targets(points, view_boxes * size, view_classes))
            image_of_view.append(index)
            if len(pending) == FEATURE_BATCH:
                flush()
    if pending:
        flush()
    return _Cache([np.concatenate(level) for level in levels], targets, np.asarray(image_of_view))


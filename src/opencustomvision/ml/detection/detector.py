"""The detector's training-side entry point, scikit-learn style: configure, ``fit``, get a model.

``ObjectDetector`` needs torch (imported inside ``fit``); what it produces,
``DetectionModel``, does not. A service trains in a worker with ``ObjectDetector``,
stores ``to_bytes()``, and predicts anywhere with ``DetectionModel.from_bytes``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from opencustomvision.ml.backbone import DEFAULT_BACKBONE, default_threads, get_spec
from opencustomvision.ml.detection.boxes import box_area, clip_boxes, ltwh_to_xyxy
from opencustomvision.ml.detection.features import FEATURE_STRIDES, SIZE_MULTIPLE, FeatureExtractor
from opencustomvision.ml.detection.model import (
    DetectionModel,
    DetectorConfig,
    shared_feature_extractor,
)
from opencustomvision.ml.detection.settings import TrainingSettings, planned_steps
from opencustomvision.ml.detection.views import TrainingViews, cache_views

if TYPE_CHECKING:  # torch is imported only inside fit
    from opencustomvision.ml.detection.model import Detection
    from opencustomvision.ml.detection.training import EpochReport

__all__ = ["DEFAULT_INPUT_SIZE", "ObjectDetector", "PreparedImages", "Region"]

logger = logging.getLogger(__name__)

DEFAULT_INPUT_SIZE = 320
Region = tuple[int, tuple[float, float, float, float]]  # (tag index, (left, top, width, height) normalised)


@dataclass(frozen=True)
class PreparedImages:
    """Training images turned into cached backbone views (``ObjectDetector.prepare``), reusable by every
    detector of the same backbone and input size trained on them or on a subset of them."""

    backbone: str
    input_size: int
    tag_count: int
    image_count: int
    views: TrainingViews
    dropped_regions: int  # empty boxes skipped


class ObjectDetector:
    """Trains a detector: frozen ImageNet EfficientNet-Lite features, a GFL head with ATSS assignment.

    ``cache_dir`` holds the shared backbone ONNX export (made once, in a child process).
    ``time_budget_seconds`` caps the training steps; the schedule itself is a number of steps chosen from the
    number of images (``settings.planned_steps``), times ``step_scale``, so the result does not follow the
    machine's load. ``threads``: ONNX Runtime threads for the backbone while caching and for the model's
    predictions (default: every CPU this process may use); the torch part runs on one thread. After ``fit``:
    ``model_`` (a ``DetectionModel``), ``schedule_`` (planned and trained steps, whether the cap bit),
    ``history_`` (one ``EpochReport`` per pass over the images), ``dropped_regions_`` (empty boxes skipped).
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        cache_dir: Path,
        time_budget_seconds: float = 600.0,
        input_size: int = DEFAULT_INPUT_SIZE,
        seed: int = 0,
        threads: int | None = None,
        settings: TrainingSettings | None = None,
        step_scale: float = 1.0,
    ) -> None:
        get_spec(backbone)
        if input_size <= 0 or input_size % SIZE_MULTIPLE:
            raise ValueError(f"input_size must be a positive multiple of {SIZE_MULTIPLE}, got {input_size}")
        if time_budget_seconds <= 0:
            raise ValueError(f"time_budget_seconds must be positive, got {time_budget_seconds}")
        if step_scale <= 0:
            raise ValueError(f"step_scale must be positive, got {step_scale}")
        self.backbone = backbone
        self.cache_dir = Path(cache_dir)
        self.time_budget_seconds = time_budget_seconds
        self.input_size = input_size
        self.seed = seed
        self.threads = threads
        self.settings = settings or TrainingSettings()
        self.step_scale = step_scale

    def prepare(self, images: Sequence[Image.Image], regions: Sequence[Sequence[Region]], tag_count: int) -> PreparedImages:
        """Check the regions and cache the backbone's views of ``images`` (RGB, EXIF orientation applied).

        An image may have no region (pure background). Torch-free."""
        if len(images) != len(regions):
            raise ValueError(f"{len(images)} images but {len(regions)} region lists")
        if tag_count <= 0:
            raise ValueError(f"tag_count must be positive, got {tag_count}")
        boxes, classes, dropped = _validated_regions(regions, tag_count)
        if not any(len(c) for c in classes):
            raise ValueError("no region to learn from")
        views = cache_views([image.convert("RGB") for image in images], boxes, classes, self.input_size, FEATURE_STRIDES,
                            self._extractor(), self.settings.views_per_image, self.settings.augmentation, self.seed)
        return PreparedImages(self.backbone, self.input_size, tag_count, len(images), views, dropped)

    def fit(
        self,
        images: Sequence[Image.Image],
        regions: Sequence[Sequence[Region]],
        tag_count: int,
        *,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> ObjectDetector:
        """Train on ``images`` (RGB, EXIF orientation applied) and their tagged regions.

        ``on_epoch`` sees a report after each pass over the images; its time is not charged to the budget.
        """
        return self.fit_prepared(self.prepare(images, regions, tag_count), on_epoch=on_epoch)

    def fit_prepared(
        self,
        prepared: PreparedImages,
        image_indices: Sequence[int] | None = None,
        *,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> ObjectDetector:
        """Train on prepared images, or only on those at ``image_indices``."""
        from opencustomvision.ml.detection.training import export_head, train_head

        if (prepared.backbone, prepared.input_size) != (self.backbone, self.input_size):
            raise ValueError(f"images prepared for {prepared.backbone} at {prepared.input_size} px, "
                             f"not {self.backbone} at {self.input_size} px")
        indices = list(range(prepared.image_count)) if image_indices is None else sorted(set(image_indices))
        if not indices or indices[0] < 0 or indices[-1] >= prepared.image_count:
            raise ValueError(f"image indices must be some of 0..{prepared.image_count - 1}")
        config = DetectorConfig(self.backbone, self.input_size, prepared.tag_count, FEATURE_STRIDES)
        extractor = self._extractor()
        history: list[EpochReport] = []

        def record(report: EpochReport) -> None:
            history.append(report)
            if on_epoch is not None:
                on_epoch(report)

        with _one_torch_thread:
            head, schedule = train_head(
                prepared.views, indices, config, extractor, self.settings, seed=self.seed,
                steps=planned_steps(len(indices), self.settings, self.step_scale),
                time_budget_seconds=self.time_budget_seconds, on_epoch=record,
            )
            head_onnx = export_head(head, config, extractor.channels)
        logger.info("trained a %d-tag detector on %d images: %d of %d steps in %.1f s%s", prepared.tag_count, len(indices),
                    schedule.steps_done, schedule.planned_steps, schedule.seconds, " (capped)" if schedule.capped else "")
        self.history_ = history
        self.schedule_ = schedule
        self.dropped_regions_ = prepared.dropped_regions
        self.model_ = DetectionModel(config, head_onnx, extractor, threads=self.threads)
        return self

    def to_bytes(self) -> bytes:
        return self.model_.to_bytes()

    def predict(self, image: Image.Image) -> list[Detection]:
        return self.model_.predict(image)

    def _extractor(self) -> FeatureExtractor:
        threads = self.threads if self.threads is not None else default_threads()
        return shared_feature_extractor(self.backbone, self.cache_dir, threads)


class _OneTorchThread:
    """Torch on one thread while any detector trains (trainings may run side by side, one per Python thread).

    The head's small ops barely gain from a second thread (raccoon epochs 1.8 s vs 2.1 s on an idle 2-core
    machine) but collapse when another process holds a core (14-90 s vs 0.7-4 s measured); ONNX Runtime (the
    feature cache) uses the detector's ``threads``. The last training to finish restores torch's setting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._trainings = 0
        self._saved = 0

    def __enter__(self) -> None:
        import torch

        with self._lock:
            if self._trainings == 0:
                self._saved = torch.get_num_threads()
            self._trainings += 1
            torch.set_num_threads(1)

    def __exit__(self, *_: object) -> None:
        import torch

        with self._lock:
            self._trainings -= 1
            if self._trainings == 0:
                torch.set_num_threads(self._saved)


_one_torch_thread = _OneTorchThread()


def _validated_regions(
    regions: Sequence[Sequence[Region]], tag_count: int
) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per image: normalised xyxy boxes clipped to the image, and their tags; plus how many were empty."""
    boxes, classes, dropped = [], [], 0
    for image_regions in regions:
        tags = np.array([tag for tag, _ in image_regions], dtype=np.int64)
        if np.any((tags < 0) | (tags >= tag_count)):
            raise ValueError(f"tag indices must be in [0, {tag_count}), got {sorted(set(tags.tolist()))}")
        xyxy = clip_boxes(ltwh_to_xyxy([box for _, box in image_regions]))
        has_area = box_area(xyxy) > 0
        dropped += int(np.count_nonzero(~has_area))
        boxes.append(xyxy[has_area])
        classes.append(tags[has_area])
    if dropped:
        logger.warning("dropped %d empty region(s)", dropped)
    return boxes, classes, dropped

"""Training hyper-parameters of the detector and its schedule, in a torch-free module so callers can set them cheaply.

The schedule is a number of optimiser steps fixed by the data before training starts, never by the clock:
the same images and seed give the same detector on a quiet machine and on a loaded one. The time budget
is only a cap; when it bites, the remaining steps are compressed (the learning rate still decays to zero)
and the schedule says so (``Schedule.capped``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from opencustomvision.ml.detection.augment import AugmentationSettings

__all__ = ["Schedule", "TrainingSettings", "planned_steps"]


@dataclass(frozen=True)
class TrainingSettings:
    views_per_image: int = 8
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    head_width: int = 64
    head_depth: int = 2
    # Steps = steps_per_root_image x sqrt(training images), within [min_steps, max_steps]: small sets are
    # seen more often (40 images: ~60 passes), large ones less (300 images: ~20), as the curves measured.
    steps_per_root_image: float = 25.0
    min_steps: int = 100
    max_steps: int = 2000
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)


def planned_steps(image_count: int, settings: TrainingSettings, scale: float = 1.0) -> int:
    """The optimiser steps a training on ``image_count`` images takes (``scale`` stretches the schedule)."""
    if image_count <= 0:
        raise ValueError(f"a schedule needs images, got {image_count}")
    if scale <= 0:
        raise ValueError(f"the schedule's scale must be positive, got {scale}")
    steps = settings.steps_per_root_image * math.sqrt(image_count)
    return max(1, round(scale * min(max(steps, settings.min_steps), settings.max_steps)))


@dataclass(frozen=True)
class Schedule:
    """What a training planned and what it did."""

    planned_steps: int  # chosen from the data before training
    steps_done: int  # fewer only when the time cap bit
    capped: bool  # the time budget cut the schedule short
    seconds: float  # caching + steps, callbacks excluded

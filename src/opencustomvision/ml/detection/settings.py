"""Training hyper-parameters of the detector, in a torch-free module so callers can set them cheaply."""

from __future__ import annotations

from dataclasses import dataclass, field

from opencustomvision.ml.detection.augment import AugmentationSettings

__all__ = ["TrainingSettings"]


@dataclass(frozen=True)
class TrainingSettings:
    views_per_image: int = 8
    max_epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    head_width: int = 64
    head_depth: int = 2
    augmentation: AugmentationSettings = field(default_factory=AugmentationSettings)



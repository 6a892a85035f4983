"""Object detection: boxes, evaluation, and a detector trained on the pretrained backbone.

Importing this package never imports torch: ``ObjectDetector.fit`` does, lazily, and
``DetectionModel`` (prediction) runs on ONNX Runtime and numpy only.
"""

from opencustomvision.ml.detection.average_precision import (
    DetectionMetrics,
    TagMetrics,
    evaluate_detections,
)
from opencustomvision.ml.detection.detector import (
    DEFAULT_INPUT_SIZE,
    ObjectDetector,
    Region,
)
from opencustomvision.ml.detection.model import (
    Detection,
    DetectionModel,
    DetectorConfig,
    ModelFormatError,
)
from opencustomvision.ml.detection.settings import TrainingSettings

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "Detection",
    "DetectionMetrics",
    "DetectionModel",
    "DetectorConfig",
    "ModelFormatError",
    "ObjectDetector",
    "Region",
    "TagMetrics",
    "TrainingSettings",
    "evaluate_detections",
]
